"""The two WSGI apps bench/track.py measures the tracking endpoints against, each run under
the same gunicorn settings as ``web:app``:

- ``bench.track_apps:limit``: bare WSGI answering ``/t/o/<token>.gif`` with the same 43-byte
  GIF and ``/t/c/<token>`` with a bare 302; it checks nothing and records nothing, so it is
  what gunicorn and HTTP cost here (the limit).
- ``bench.track_apps:usual()``: the usual approach, a Flask endpoint that verifies the token
  like the real one, then INSERTs the hit into a plain ``bench_hits`` table with SQLAlchemy and
  commits, once per request. Clicks redirect to the message's stored link, read once per
  message and cached as the real app does, so the two differ only in how a hit is kept.

Both read ``DATABASE_URL``, ``SECRET_KEY`` and ``BASE_URL`` from the environment like the real
app; bench/track.py creates the ``bench_hits`` table before starting them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")

NO_CACHE = [
    ("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
]

HITS_TABLE = "bench_hits"

CREATE_HITS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {HITS_TABLE} (
    id BIGSERIAL PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    message_id BIGINT NOT NULL,
    link INTEGER,
    user_agent VARCHAR(512),
    ip VARCHAR(64),
    at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

_PIXEL_HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *NO_CACHE]
_REDIRECT_HEADERS = [("Location", "https://www.example.com/"), ("Content-Length", "0"), *NO_CACHE]
_NOT_FOUND_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "0")]


def limit(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The limit: answer as the tracking endpoints do, doing nothing else."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/t/o/"):
        start_response("200 OK", _PIXEL_HEADERS)
        return [GIF]
    if path.startswith("/t/c/"):
        start_response("302 Found", _REDIRECT_HEADERS)
        return [b""]
    start_response("404 Not Found", _NOT_FOUND_HEADERS)
    return [b""]


def usual() -> Any:
    """The usual approach: one synchronous INSERT and COMMIT per hit (gunicorn calls this
    factory once per worker, as it imports ``web:app`` once per worker)."""
    from flask import Flask, Response, abort, redirect, request
    from sqlalchemy import MetaData, Table, select
    from sqlalchemy.orm import sessionmaker

    from campaigns.config import normalise_database_url
    from campaigns.store.db import make_engine
    from campaigns.store.models import Message
    from campaigns.tracking.tokens import Tokens

    engine = make_engine(normalise_database_url(os.environ["DATABASE_URL"]))
    hits = Table(HITS_TABLE, MetaData(), autoload_with=engine)
    sessions = sessionmaker(engine)
    tokens = Tokens(os.environ["SECRET_KEY"], os.environ.get("BASE_URL", "http://localhost"))
    app = Flask(__name__)

    @lru_cache(maxsize=100_000)
    def links(message_id: int) -> tuple[str, ...] | None:
        with sessions() as session:
            stored = session.scalar(select(Message.links).where(Message.id == message_id))
        return None if stored is None else tuple(stored)

    def insert(kind: str, message_id: int, link: int | None = None) -> None:
        with sessions() as session:
            session.execute(
                hits.insert().values(
                    kind=kind,
                    message_id=message_id,
                    link=link,
                    user_agent=request.headers.get("User-Agent", "")[:512],
                    ip=request.remote_addr or "",
                    at=datetime.now(UTC),
                )
            )
            session.commit()

    @app.get("/t/o/<token>.gif")
    def open_pixel(token: str) -> Response:
        payload = tokens.loads("open", token)
        if payload is None or type(payload.get("m")) is not int:
            abort(404)
        insert("open", payload["m"])
        return Response(GIF, mimetype="image/gif", headers=dict(NO_CACHE))

    @app.get("/t/c/<token>")
    def click(token: str) -> Any:
        payload = tokens.loads("click", token)
        if (
            payload is None
            or type(payload.get("m")) is not int
            or type(payload.get("l")) is not int
        ):
            abort(404)
        stored = links(payload["m"])
        if stored is None or not 0 <= payload["l"] < len(stored):
            abort(404)
        insert("click", payload["m"], payload["l"])
        response = redirect(stored[payload["l"]], code=302)
        response.headers.update(dict(NO_CACHE))
        return response

    return app
