"""The worker process: ``python worker.py`` runs an RQ worker on the project's queues.

``rq worker -u $REDIS_URL campaigns-high campaigns campaigns-low`` does the same job. The
worker needs a real Redis server (``REDIS_URL``); the in-process stand-in serves only
single-process runs.
"""

from __future__ import annotations

import sys

from rq import Worker

from campaigns import config as settings
from campaigns.exceptions import ConfigError
from campaigns.queue import connect, queues


def main() -> int:
    try:
        cfg = settings.load()
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    if not cfg.redis_url:
        print("worker: REDIS_URL is unset; set it, e.g. REDIS_URL=redis://127.0.0.1:6379/0", file=sys.stderr)
        return 2
    connection = connect(cfg)
    Worker(queues(connection), connection=connection).work(with_scheduler=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
