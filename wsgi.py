"""The dashboard, API and /metrics app for a WSGI server other than the daemon's own, e.g.

    DIRECTOR_ARGS="-f /etc/keepalived/keepalived.conf" gunicorn -k gevent -w 1 wsgi:app

The daemon (VRRP, checks, backend) runs in the same process, started in a greenlet on
import, with the command line from DIRECTOR_ARGS (``--web`` is ignored: the WSGI server
serves the app). One worker only: a second would be a second daemon. Signals belong to the
WSGI server here; POST /api/v1/reload reloads.
"""

from director.patching import patch_all

patch_all()

import os  # noqa: E402
import shlex  # noqa: E402

from director.embedded import start_director  # noqa: E402
from web import create_app  # noqa: E402

director, admin_token = start_director(shlex.split(os.environ.get("DIRECTOR_ARGS", "")))
app = create_app(director, admin_token=admin_token)
