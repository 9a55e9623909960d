"""What each role may do on the dashboard and the API: one table, checked before every
request by the blueprints' guards, so a route cannot forget it.

Each endpoint names the permission it needs with :func:`needs`; an endpoint that names none
needs :data:`READ_REPORTS` for GET and HEAD and :data:`STEER` for anything else, so a new
route is closed to the read-only roles until it says otherwise (and tests/test_roles.py
fails until it names one). Two marks are not permissions of a role: :data:`PUBLIC` (open
without signing in: the sign-in page, tracking links, the health check, the OpenAPI
document) and :data:`SIGNED_IN` (any signed-in user: signing out, one's own settings).

API keys have a role too (``API_KEYS=marketer:KEY1,viewer:KEY2``; a bare key is an admin's),
checked against the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from campaigns.store.enums import UserRole

F = TypeVar("F", bound=Callable[..., object])

READ_REPORTS = "read_reports"  # journeys list, reports, NPS, health overview (no personal data)
READ_PEOPLE = "read_people"  # accounts, contacts, timelines, who is at a step
WORK_TASKS = "work_tasks"  # the task inbox: complete and cancel tasks
STEER = "steer"  # edit, deploy, pause, resume, archive, remove people, export, send a test
MANAGE_USERS = "manage_users"  # users and the audit log of user changes
INGEST = "ingest"  # the API's writes from the product: events, usage, in-app and bounce reports

PUBLIC = "public"
"""The mark of an endpoint open to everyone, signed in or not (it checks its own token)."""
SIGNED_IN = "signed_in"
"""The mark of an endpoint open to every signed-in user, whatever their role."""

GRANTS: dict[str, frozenset[str]] = {
    UserRole.ADMIN: frozenset({READ_REPORTS, READ_PEOPLE, WORK_TASKS, STEER, MANAGE_USERS, INGEST}),
    UserRole.MARKETER: frozenset({READ_REPORTS, READ_PEOPLE, STEER, INGEST}),
    UserRole.CSM: frozenset({READ_REPORTS, READ_PEOPLE, WORK_TASKS}),
    UserRole.VIEWER: frozenset({READ_REPORTS}),
}
"""The permissions of each role."""

PERMISSIONS: tuple[str, ...] = (
    READ_REPORTS,
    READ_PEOPLE,
    WORK_TASKS,
    STEER,
    MANAGE_USERS,
    INGEST,
    PUBLIC,
    SIGNED_IN,
)
"""Every mark :func:`needs` accepts."""

WORDS: dict[str, str] = {
    READ_REPORTS: "read the reports",
    READ_PEOPLE: "see contacts and accounts",
    WORK_TASKS: "work on tasks",
    STEER: "change journeys",
    MANAGE_USERS: "manage users",
    INGEST: "send events",
}
"""Each permission as the 403 page says it: "The viewer role may not change journeys"."""

_NEEDS = "_campaigns_needs"


def needs(permission: str) -> Callable[[F], F]:
    """Mark a view function with the permission it needs (put it under the route)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def mark(view: F) -> F:
        setattr(view, _NEEDS, permission)
        return view

    return mark


def marked(view: Callable[..., object] | None) -> str | None:
    """The permission ``view`` was marked with, or None when it names none."""
    permission = getattr(view, _NEEDS, None)
    return permission if isinstance(permission, str) else None


def required(view: Callable[..., object] | None, method: str) -> str:
    """The permission a request to ``view`` with ``method`` needs."""
    permission = marked(view)
    if permission is not None:
        return permission
    return READ_REPORTS if method in ("GET", "HEAD") else STEER


def may(role: str | None, permission: str) -> bool:
    """Whether ``role`` has ``permission`` (an unknown role has none but :data:`PUBLIC`)."""
    if permission == PUBLIC:
        return True
    granted = GRANTS.get(role or "")
    if granted is None:
        return False
    return permission == SIGNED_IN or permission in granted


def refusal(role: str | None, permission: str) -> str:
    """Why a request is refused, in one sentence: "The viewer role may not change journeys."."""
    return f"The {role or 'unknown'} role may not {WORDS.get(permission, permission)}."
