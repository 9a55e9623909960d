"""Dashboard users: adding them, listing them and checking a password.

Passwords are kept only as salted scrypt hashes (``werkzeug.security``). Checking an unknown
email costs the same as checking a wrong password (a dummy hash is checked), so timing does
not tell which addresses have accounts. Each user has a session version that every dashboard
session carries; :func:`end_sessions` (on signing out) and :func:`set_password` add one to
it, which ends all of that user's sessions at their next request. The web side
(:mod:`campaigns.web.auth`) and the CLI (``campaigns user``) both call in here; nothing here
knows about Flask or click.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from campaigns.exceptions import CampaignsError
from campaigns.store.enums import TaskMail, UserRole
from campaigns.store.models import User

MIN_PASSWORD = 10
"""Characters a password needs at least."""

MAX_PASSWORD = 1024
"""Characters a password may have at most (scrypt reads all of it; keep requests cheap)."""

HASH_METHOD = "scrypt"

_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,255}")


class UserError(CampaignsError):
    """A user cannot be added or changed as asked (bad email, weak password, duplicate)."""


def normalise_email(email: str) -> str:
    """Emails are compared without case and surrounding spaces."""
    return email.strip().lower()


def check_password(password: str) -> None:
    """Raise :class:`UserError` unless ``password`` is acceptable."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password too long: at most {MAX_PASSWORD} characters")


def add_user(
    session: Session,
    email: str,
    password: str,
    now: datetime,
    *,
    name: str = "",
    role: str = UserRole.CSM,
) -> User:
    """Add a user; the caller commits. Raises :class:`UserError` for a bad email, role or
    password, or an email that already has a user."""
    address = normalise_email(email)
    if not _EMAIL.fullmatch(address) or len(address) > 320:
        raise UserError(f"not an email address: {email!r}")
    if role not in set(UserRole):
        raise UserError(f"unknown role {role!r}; one of {', '.join(UserRole)}")
    check_password(password)
    if find_user(session, address) is not None:
        raise UserError(f"a user with email {address} already exists")
    user = User(
        email=address,
        name=name.strip()[:255],
        role=role,
        password_hash=generate_password_hash(password, method=HASH_METHOD),
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, email: str, password: str) -> User:
    """Give an existing user a new password; every dashboard session of theirs ends (someone
    who learnt the old password may be signed in with it). The caller commits."""
    user = find_user(session, email)
    if user is None:
        raise UserError(f"no user with email {normalise_email(email)}")
    check_password(password)
    user.password_hash = generate_password_hash(password, method=HASH_METHOD)
    session.flush()
    end_sessions(session, user.id)
    return user


def set_role(session: Session, email: str, role: str) -> tuple[User, str]:
    """Give an existing user another role (:class:`UserRole`); the caller commits. Returns the
    user and their role before. Raises :class:`UserError` for an unknown user or role."""
    user = find_user(session, email)
    if user is None:
        raise UserError(f"no user with email {normalise_email(email)}")
    if role not in set(UserRole):
        raise UserError(f"unknown role {role!r}; one of {', '.join(UserRole)}")
    before, user.role = user.role, role
    session.flush()
    return user, before


def end_sessions(session: Session, user_id: int) -> None:
    """End every dashboard session of this user, on every device and web process, copies of
    the cookie included; the caller commits. Done in SQL (``+ 1``) so that two at once both
    count."""
    session.execute(
        update(User).where(User.id == user_id).values(session_version=User.session_version + 1)
    )


_TEAM = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def set_task_mail(
    session: Session,
    email: str,
    *,
    task_mail: str | None = None,
    escalate_to: str | None = None,
    team: str | None = None,
) -> User:
    """Change how a user hears of their tasks (``each`` or ``digest``), who their overdue
    tasks escalate to (an address; ``""`` clears it) and their team (``""`` clears it); a
    value left None stays as it is. The caller commits. Raises :class:`UserError`."""
    user = find_user(session, email)
    if user is None:
        raise UserError(f"no user with email {normalise_email(email)}")
    if task_mail is not None:
        if task_mail not in set(TaskMail):
            raise UserError(f"task mail must be one of {', '.join(TaskMail)}, not {task_mail!r}")
        user.task_mail = task_mail
    if escalate_to is not None:
        address = normalise_email(escalate_to)
        if address and (not _EMAIL.fullmatch(address) or "." not in address.rsplit("@", 1)[-1]):
            raise UserError(f"not an email address: {escalate_to!r}")
        if address == user.email:
            raise UserError("a user's tasks cannot escalate to themselves")
        user.escalate_to = address or None
    if team is not None:
        name = team.strip().lower()
        if name and not _TEAM.fullmatch(name):
            raise UserError(
                f"bad team {team!r}: lowercase letters, digits, - and _, starting with a letter"
            )
        user.team = name or None
    session.flush()
    return user


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return generate_password_hash("not a password of anyone", method=HASH_METHOD)


def authenticate(session: Session, email: str, password: str, now: datetime) -> User | None:
    """The user with this email and password (their ``last_login_at`` set to ``now``; the
    caller commits), or None. An unknown email takes as long as a wrong password."""
    if len(password) > MAX_PASSWORD:
        return None
    user = (
        find_user(session, email) if _EMAIL.fullmatch(normalise_email(email)) else None
    )  # PostgreSQL refuses NUL in a query
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    user.last_login_at = now
    return user
