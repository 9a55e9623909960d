"""The Flask side: an application factory and one blueprint per area.

``web.py`` at the top level calls :func:`create_app`; nothing else lives there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from campaigns import config as settings
from campaigns.clock import SystemClock
from campaigns.db import make_engine, make_sessionmaker, migrate


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then ``test_config`` on top."""
    cfg = settings.load()
    app = Flask(__name__)
    app.config.from_mapping(SECRET_KEY=cfg.secret_key, DATABASE_URL=cfg.database_url, CAMPAIGNS=cfg)
    if test_config:
        app.config.from_mapping(test_config)
    engine = make_engine(app.config["DATABASE_URL"])
    migrate(engine)
    app.extensions["campaigns.sessions"] = make_sessionmaker(engine)
    app.extensions["campaigns.clock"] = app.config.get("CLOCK") or SystemClock()

    from campaigns.web.health import bp as health

    app.register_blueprint(health)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error={"code": exc.code, "message": exc.description}), exc.code

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Any:
        app.logger.exception("unhandled error")
        return jsonify(error={"code": 500, "message": "internal error"}), 500

    return app
