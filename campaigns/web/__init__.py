"""The Flask side: an application factory and one blueprint per area.

``web.py`` at the top level calls :func:`create_app`; nothing else lives there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, request
from redis import Redis
from werkzeug.exceptions import HTTPException, RequestURITooLarge

from campaigns import config as settings
from campaigns.services import build
from campaigns.web.throttle import DatabaseAttempts, RedisAttempts, SignInThrottle
from campaigns.web.track import Tracking

MAX_URL = 4000
"""Bytes of a request's path and query, percent-encoded, beyond which it is refused with 414."""


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then ``test_config`` on top.

    Everything it runs on comes from :func:`campaigns.services.build`; ``CLOCK``,
    ``TRANSPORT`` and ``HITS`` in ``test_config`` replace the clock, the email transport and
    the hit log. Raises :class:`~campaigns.exceptions.ConfigError` for a bad setting,
    :class:`~campaigns.exceptions.ServiceUnavailable` when ``REDIS_URL`` does not answer and
    :class:`~campaigns.services.SchemaBehind` when the database is not migrated; ``web.py``
    turns them into one line on stderr. It never changes the schema."""
    cfg = settings.load()
    app = Flask(__name__, static_folder=None)  # no static files: every route is a marked view
    app.url_map.merge_slashes = False  # "/t/c//evil.example.com" is a 404, not a redirect
    app.config.from_mapping(SECRET_KEY=cfg.secret_key, DATABASE_URL=cfg.database_url, CAMPAIGNS=cfg)
    app.config.from_mapping(  # the dashboard's sign-in cookie
        SESSION_COOKIE_NAME="campaigns_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    if test_config:
        app.config.from_mapping(test_config)
    if "SESSION_COOKIE_SECURE" not in (test_config or {}):
        app.config["SESSION_COOKIE_SECURE"] = app.config["CAMPAIGNS"].base_url.startswith(
            "https://"
        )
    redis = _redis(app)
    services = build(
        app.config["CAMPAIGNS"],
        app.config.get("CLOCK"),
        database_url=app.config["DATABASE_URL"],
        redis=redis,
        transport=app.config.get("TRANSPORT"),
        hits=app.config.get("HITS"),
    )  # raises SchemaBehind (one line) when `campaigns migrate` has not been run
    app.extensions["campaigns.services"] = services
    app.extensions["campaigns.engine"] = services.database  # tests dispose of its pool
    app.extensions["campaigns.sessions"] = services.sessions
    app.extensions["campaigns.clock"] = services.clock
    app.config.setdefault("MAX_CONTENT_LENGTH", 1 << 20)
    app.extensions["campaigns.tracking"] = Tracking(
        services.tokens, services.config.secret_key, services.hits, services.sessions
    )
    app.extensions["campaigns.signin"] = _signin_throttle(app, redis)

    @app.before_request
    def url_not_too_long() -> None:
        # Servers refuse long request lines themselves, each in its own words (gunicorn past 4094
        # bytes, as plain text); below that, a URL too long for us is a 414 in our one error shape.
        # RAW_URI is the request target as sent (gunicorn, Werkzeug); full_path is decoded,
        # a bit shorter.
        target = (
            request.environ.get("RAW_URI")
            or request.environ.get("REQUEST_URI")
            or request.full_path
        )
        if len(target) > MAX_URL:
            raise RequestURITooLarge(
                f"the URL is longer than {MAX_URL} bytes; send long values in a request body"
            )

    from campaigns.web.track import bp as track

    app.register_blueprint(track)

    from campaigns.web.health import bp as health

    app.register_blueprint(health)

    # Each blueprint's route modules add their routes to the blueprint of its base module,
    # which imports none of them; importing them here, before registering, is the wiring.
    from campaigns.web import (  # noqa: F401
        accounts,
        api,
        api_accounts,
        api_crm,
        api_events,
        api_in_app,
        api_people,
        crm,
        dashboard,
        editor,
        events,
        journey_steps,
        lifecycle,
        previews,
    )
    from campaigns.web.api_base import bp as api_bp
    from campaigns.web.dashboard_base import bp as dashboard_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(dashboard_bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        response = jsonify(error={"code": exc.code, "message": exc.description})
        response.status_code = exc.code or 500
        # Keep the headers Werkzeug's exception carries: a 405 must list the methods the URL takes
        # in Allow (RFC 9110), whatever the method asked (TRACE and QUERY too), on every path.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers.add(name, value)
        return response

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Any:
        app.logger.exception("unhandled error")
        return jsonify(error={"code": 500, "message": "internal error"}), 500

    # The pixel and clicks skip Flask's request cycle (see fastpath.py); behind a load
    # balancer, TRUSTED_PROXIES hops of X-Forwarded-For give the client's address.
    from campaigns.web.fastpath import TrackingFastPath

    wsgi: Any = TrackingFastPath(
        app.wsgi_app, app.extensions["campaigns.tracking"], app.extensions["campaigns.clock"].now
    )
    hops = app.config["CAMPAIGNS"].trusted_proxies
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        wsgi = ProxyFix(wsgi, x_for=hops, x_proto=hops, x_host=hops)
    app.wsgi_app = wsgi  # type: ignore[method-assign]
    return app


def _redis(app: Flask) -> Redis | None:
    """One Redis client (and connection pool) for the web process, or None without REDIS_URL."""
    url = app.config["CAMPAIGNS"].redis_url
    if not url:
        return None
    if app.config.get("HITS") is None:  # (a test's own hit log needs no server)
        from campaigns.preflight import check_redis

        check_redis(url)  # started without it, the app would fail every tracking hit and sign-in
    return Redis.from_url(url)


def _signin_throttle(app: Flask, redis: Redis | None) -> SignInThrottle:
    """The brake on password guessing, shared by every web process: counts in Redis when
    REDIS_URL is set, else in the database; ``SIGNIN_ATTEMPTS`` in the test config replaces
    the store."""
    store = app.config.get("SIGNIN_ATTEMPTS")
    if store is None:
        store = (
            RedisAttempts(redis)
            if redis is not None
            else DatabaseAttempts(app.extensions["campaigns.sessions"])
        )
    return SignInThrottle(store)
