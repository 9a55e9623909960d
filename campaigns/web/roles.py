"""What each role may do on the dashboard and the API: one table, checked before every
request (:func:`allowed`), so a route cannot forget it.

Each endpoint names the permission it needs with :func:`needs`; an endpoint that names none
needs :data:`READ_REPORTS` for GET and HEAD and :data:`STEER` for anything else, so a new
route is closed to the read-only roles until it says otherwise.
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

GRANTS: dict[str, frozenset[str]] = {
    UserRole.ADMIN: frozenset({READ_REPORTS, READ_PEOPLE, WORK_TASKS, STEER, MANAGE_USERS}),
    UserRole.MARKETER: frozenset({READ_REPORTS, READ_PEOPLE, STEER}),
    UserRole.CSM: frozenset({READ_REPORTS, READ_PEOPLE, WORK_TASKS}),
    UserRole.VIEWER: frozenset({READ_REPORTS}),
}
"""The permissions of each role."""

_NEEDS = "_campaigns_needs"


def needs(permission: str) -> Callable[[F], F]:
    """Mark a view function with the permission it needs (put it under the route)."""

    def mark(view: F) -> F:
        setattr(view, _NEEDS, permission)
        return view

    return mark


def required(view: Callable[..., object] | None, method: str) -> str:
    """The permission a request to ``view`` with ``method`` needs."""
    permission = getattr(view, _NEEDS, None)
    if isinstance(permission, str):
        return permission
    return READ_REPORTS if method in ("GET", "HEAD") else STEER


def may(role: str | None, permission: str) -> bool:
    """Whether ``role`` has ``permission`` (an unknown role has none)."""
    return permission in GRANTS.get(role or "", frozenset())
