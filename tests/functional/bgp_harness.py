"""A stand-in for the daemon around the BGP engine driver, for tests/functional/
test_bgp_exabgp.py: it runs director.bgp.exabgp.ExaBgpEngine under gevent, as the daemon
will, and takes orders as JSON lines on stdin, one JSON answer per order on stdout:

    {"op": "start", "peers": [{Peer fields}]}
    {"op": "routes", "routes": {"PEER": {"PREFIX": {Route fields}}}}
    {"op": "sessions"}  {"op": "counters"}  {"op": "pid"}  {"op": "running"}
    {"op": "configure", "peers": [...]}

On SIGTERM it does what the daemon's TERM will: withdraw_all first, says
{"event": "withdrawn", "acknowledged": BOOL}, then waits (at most HOLD seconds) for the line
"exit" on stdin, so that the test can look at the router while ExaBGP still runs, then stops
the engine and exits 0.

    python tests/functional/bgp_harness.py STATE_DIR
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402

from gevent.fileobject import FileObject  # noqa: E402

from director import hub  # noqa: E402
from director.bgp.exabgp import ExaBgpEngine  # noqa: E402
from director.bgp.model import Peer, Route  # noqa: E402

HOLD = 20.0


def answer(value) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def routes_of(orders: dict) -> dict:
    return {peer: {prefix: Route(prefix=prefix, **{k: tuple(v) if isinstance(v, list) else v
                                                   for k, v in fields.items()})
                   for prefix, fields in table.items()}
            for peer, table in orders.items()}


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    engine = ExaBgpEngine(sys.argv[1])
    stdin = FileObject(sys.stdin.fileno(), "rb")
    terminated = hub.Event()
    hub.on_signal(signal.SIGTERM, terminated.set)

    def serve() -> None:
        for raw in stdin:
            order = json.loads(raw)
            op = order["op"]
            if op == "start":
                engine.start(tuple(Peer(**p) for p in order["peers"]))
                answer({"ok": True})
            elif op == "configure":
                engine.configure(tuple(Peer(**p) for p in order["peers"]))
                answer({"ok": True})
            elif op == "routes":
                engine.set_routes(routes_of(order["routes"]))
                answer({"ok": True})
            elif op == "sessions":
                answer({peer: asdict(s) for peer, s in engine.sessions().items()})
            elif op == "counters":
                answer(asdict(engine.counters()))
            elif op == "pid":
                answer({"pid": engine.process.pid if engine.process else None})
            elif op == "running":
                answer({"running": engine.running()})
            elif op == "exit":
                return
            else:
                answer({"error": f"unknown op {op}"})

    server = hub.spawn(serve, name="harness orders")
    hub.joinall([server, hub.spawn(terminated.wait)], count=1)
    if terminated.is_set():
        server.kill()
        acknowledged = engine.withdraw_all(5.0)
        answer({"event": "withdrawn", "acknowledged": acknowledged})
        with hub.Timeout(HOLD, False):
            for raw in stdin:
                if raw.strip() == b"exit":
                    break
    engine.stop()
    answer({"event": "stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
