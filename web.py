"""The web process: tracking endpoints, API and dashboard. Run it with
``flask --app web run`` (trying out) or ``gunicorn 'web:app'`` (production).

A bad setting, a Redis or database that does not answer, or a database whose schema is
behind the code (run ``campaigns migrate``: the web process never migrates) stops it with one
line on stderr (see :mod:`campaigns.preflight`), never a traceback. Exit status 2, except under
gunicorn:
there a worker that exits 4 ("App failed to load") makes the master stop too, where any
other status would have it start the worker again, and fail again, forever.
"""

import sys

from campaigns.preflight import start
from campaigns.web import create_app

app = start("web", create_app, status=4 if "gunicorn" in sys.modules else 2)
