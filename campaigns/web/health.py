"""``/healthz``: the process is up and the database answers (for load balancers)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from campaigns.web.roles import PUBLIC, needs

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@needs(PUBLIC)
def healthz() -> Any:
    try:
        with current_app.extensions["campaigns.sessions"]() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
