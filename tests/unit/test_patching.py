"""director.patching skips gevent's entry-point plugins: that is only right while none but
gevent's own harmless one is installed."""

import subprocess
import sys
from importlib import metadata

GROUPS = ("gevent.plugins.monkey.will_patch_all", "gevent.plugins.monkey.did_patch_all",
          "gevent.plugins.monkey.will_patch_module", "gevent.plugins.monkey.did_patch_module",
          "gevent.plugins.monkey.did_patch_builtins")


def test_no_gevent_plugin_is_installed_but_gevents_own_warning():
    found = {(group, ep.value) for group in GROUPS for ep in metadata.entry_points(group=group)}
    # gevent's own: a warning when signal is patched without os (patch_all patches both)
    assert found <= {("gevent.plugins.monkey.will_patch_all",
                      "gevent.monkey:_subscribe_signal_os")}, found


def test_patch_all_patches_everything_and_skips_the_metadata_scan():
    code = ("import sys\n"
            "from director.patching import patch_all\n"
            "patch_all()\n"
            "from gevent import monkey\n"
            "assert all(monkey.is_module_patched(m) for m in "
            "('socket', 'ssl', 'os', 'signal', 'subprocess', 'threading', 'select', 'time'))\n"
            "import gevent.events\n"
            "assert gevent.events.notify_and_call_entry_points is not gevent.events.notify\n"
            "print('importlib.metadata' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
