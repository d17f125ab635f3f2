"""What a checker kind declares about itself, in its own module of this package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Context, Kw
    from ..checker import Checker, CheckSettings, Target


class Kind(NamedTuple):
    """One checker kind: the block keyword and its keywords (the config engine builds the block
    from them, director/config/blocks/checkers.py), keepalived's defaults for it (base.py's
    resolve_settings), and how its checker is built (build). A NamedTuple rather than a frozen
    dataclass: -t reads the declarations, and a NamedTuple class costs a seventh to make."""

    name: str                       # the block keyword: TCP_CHECK
    model_name: str                 # the class name of its parsed block
    # Imports and returns the checker class; None: parsed and warned about, never run.
    implementation: Callable[[], type] | None = None
    # Its own keywords, after the shared ones, declared with the engine's vocabulary: handed
    # in, not imported, since the engine imports this package.
    keywords: Callable[[type[Vocabulary]], tuple[Kw, ...]] | None = None
    shared: bool = True             # takes the keywords every network checker takes
    required: tuple[str, ...] = ()  # keywords the block must have
    finish: Callable[[dict, Context], None] | None = None   # checks across its keywords
    nb_get_retry: bool = False      # keepalived 2 reads it only in HTTP_GET and SSL_GET
    retry: int = 1                  # keepalived's defaults for the kind (check_*.c)
    delay_before_retry: float | None = 1.0      # None: the delay_loop
    max_delay_loop: float | None = None         # checked at least this often
    # What the checker needs beyond its block and Target, from the whole configuration,
    # its real server and its settings: keyword arguments of its class. A reload that
    # changes none of it (nor the block, nor the settings) keeps the checker.
    inputs: Callable[[Any, Any, CheckSettings], dict[str, Any]] | None = None
    aliases: tuple[str, ...] = ()   # other block keywords for it
    unsupported: str = ""           # why it is parsed but not run (-t says it)
    # Shared keywords it cannot honour: writing one is an error saying ``refused_why``.
    refused: tuple[str, ...] = ()
    refused_why: str = ""
    extension: bool = False         # director's own kind, which keepalived does not have
    doc: str = ""                   # what the block is, for the docs (extensions)

    @property
    def runs(self) -> bool:
        return self.implementation is not None

    def build(self, block: Any, target: Target, config: Any, real: Any,
              settings: CheckSettings) -> Checker:
        """Its checker for a parsed block of this kind."""
        if self.implementation is None:
            raise LookupError(f"{self.name} is parsed but not run: {self.unsupported}")
        extra = self.inputs(config, real, settings) if self.inputs is not None else {}
        return self.implementation()(block, target, **extra)
