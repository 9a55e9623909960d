"""The open pixel and click redirects without Flask's request cycle.

These two URLs take nearly all tracking traffic (every opened email loads the pixel; image
proxies and scanners load it again), and their work is tiny: verify a token, append a hit
to Redis, answer with a fixed GIF or a redirect. Flask's routing, session and response
objects cost more than that work itself, so this WSGI layer in front of the app answers
``GET``/``HEAD`` on ``/t/o/<token>.gif`` and ``/t/c/<token>`` directly, with the same
checks and headers as :mod:`campaigns.web.track` (which still serves any other method and
every other tracking URL). Anything else goes to Flask untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from campaigns.tracking.hits import Hit
from campaigns.tracking.tokens import TRAP_LINK
from campaigns.web.track import GIF, NO_CACHE, Tracking

_COMMON = [
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Robots-Tag", "noindex, nofollow"),
    *NO_CACHE.items(),
]
_GIF_HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *_COMMON]
_NOT_FOUND = json.dumps(
    {"error": {"code": 404, "message": "The requested URL was not found on the server."}}
).encode()

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class TrackingFastPath:
    """WSGI middleware: the pixel and clicks answered here, the rest passed to ``app``."""

    def __init__(self, app: WSGIApp, tracking: Tracking, now: Callable[[], Any]) -> None:
        self.app = app
        self.tracking = tracking
        self.now = now

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD") and path.startswith("/t/"):
            if path.startswith("/t/o/") and path.endswith(".gif"):
                return self._open(environ, start_response, path[5:-4], method)
            if path.startswith("/t/c/"):
                return self._click(environ, start_response, path[5:], method)
        return self.app(environ, start_response)

    def _open(
        self, environ: dict[str, Any], start_response: StartResponse, token: str, method: str
    ) -> Iterable[bytes]:
        payload = self.tracking.tokens.loads("open", token) if "/" not in token else None
        if payload is None or type(payload.get("m")) is not int:
            return _not_found(start_response)
        self._record(environ, "open", payload["m"], method)
        start_response("200 OK", _GIF_HEADERS)
        return [] if method == "HEAD" else [GIF]

    def _click(
        self, environ: dict[str, Any], start_response: StartResponse, token: str, method: str
    ) -> Iterable[bytes]:
        payload = self.tracking.tokens.loads("click", token) if token and "/" not in token else None
        link = payload.get("l") if payload is not None else None
        if payload is None or type(payload.get("m")) is not int or type(link) is not int:
            return _not_found(start_response)
        if link == TRAP_LINK:
            self._record(environ, "trap", payload["m"], method, link)
            start_response("204 No Content", list(_COMMON))
            return []
        links = self.tracking.links(payload["m"])
        if links is None or not 0 <= link < len(links):
            return _not_found(start_response)
        self._record(environ, "click", payload["m"], method, link)
        start_response("302 Found", [("Location", links[link]), ("Content-Length", "0"), *_COMMON])
        return []

    def _record(
        self, environ: dict[str, Any], kind: str, message: int, method: str, link: int | None = None
    ) -> None:
        agent = environ.get("HTTP_USER_AGENT", "")
        agent = agent.encode("latin-1", "replace").decode("utf-8", "replace")[
            :512
        ]  # WSGI strings are latin-1
        self.tracking.hits.record(
            Hit(
                kind=kind,
                message=message,
                at=self.now().timestamp(),
                method=method,
                user_agent=agent,
                ip=environ.get("REMOTE_ADDR") or "",
                link=link,
            )
        )


def _not_found(start_response: StartResponse) -> Iterable[bytes]:
    start_response(
        "404 Not Found",
        [("Content-Type", "application/json"), ("Content-Length", str(len(_NOT_FOUND))), *_COMMON],
    )
    return [_NOT_FOUND]
