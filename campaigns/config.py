"""Configuration from environment variables, with the defaults of :mod:`campaigns.defaults`.

One frozen object carries every setting; the CLI, ``web.py`` and ``worker.py`` build it once
with :func:`load` and pass it on. Bad values raise :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from campaigns import defaults
from campaigns.exceptions import ConfigError

_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")
_MAIL_SCHEMES = ("file", "smtp", "smtps")


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str | None
    mail_url: str
    secret_key: str
    base_url: str
    journeys_dir: Path
    templates_dir: Path
    secret_is_ephemeral: bool = False
    mail_from: str = defaults.MAIL_FROM
    frequency_cap: int = defaults.FREQUENCY_CAP
    frequency_days: int = defaults.FREQUENCY_DAYS
    domain_rate_limits: str = ""
    send_batch: int = defaults.SEND_BATCH
    lease_seconds: int = defaults.LEASE_SECONDS
    job_timeout: int = defaults.JOB_TIMEOUT
    api_keys: tuple[str, ...] = ()
    trusted_proxies: int = 0

    @property
    def segments_file(self) -> Path:
        return self.journeys_dir / defaults.SEGMENTS_FILE


def normalise_database_url(url: str) -> str:
    """Accept the URL forms people paste (``postgres://``) and pick the psycopg 3 driver."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _DB_SCHEMES:
        raise ConfigError(f"DATABASE_URL: unsupported scheme {scheme!r}; use sqlite:///file.db or postgresql://user@host/db")
    if scheme in ("postgres", "postgresql"):
        return "postgresql+psycopg:" + url.split(":", 1)[1]
    return url


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or (parts.scheme in ("http", "https", "redis", "rediss") and not parts.netloc):
        raise ConfigError(f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {value!r}")
    return value


def load(env: Mapping[str, str] | None = None, *, root: Path | None = None) -> Config:
    """Read the settings from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    root = root or Path()  # relative: messages show journeys/x.yaml, not a long path
    database_url = normalise_database_url(env.get("DATABASE_URL") or defaults.DATABASE_URL)
    redis_url = env.get("REDIS_URL") or None
    if redis_url is not None:
        _check_url("REDIS_URL", redis_url, ("redis", "rediss", "unix"))
    mail_url = _check_url("MAIL_URL", env.get("MAIL_URL") or defaults.MAIL_URL, _MAIL_SCHEMES)
    mail = urlsplit(mail_url)
    if mail.scheme in ("smtp", "smtps") and not mail.hostname:
        raise ConfigError(f"MAIL_URL: no host in {mail_url!r}; write smtp://user:pass@host:587")
    try:
        mail.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigError(f"MAIL_URL: bad port in {mail_url!r}") from None
    base_url = _check_url("BASE_URL", env.get("BASE_URL") or defaults.BASE_URL, ("http", "https"))
    secret = env.get("SECRET_KEY")
    ephemeral = not secret
    if secret is not None and secret and len(secret) < 16:
        raise ConfigError("SECRET_KEY: too short; use at least 16 random characters")
    mail_from = env.get("MAIL_FROM") or defaults.MAIL_FROM
    if "@" not in mail_from or "\n" in mail_from:
        raise ConfigError(f"MAIL_FROM: not an address: {mail_from!r}; e.g. 'Customer Success <cs@example.com>'")
    cap, days = _frequency(env.get("FREQUENCY_CAP"))
    return Config(
        database_url=database_url,
        redis_url=redis_url,
        mail_url=mail_url,
        secret_key=secret or secrets.token_urlsafe(32),
        base_url=base_url.rstrip("/"),
        journeys_dir=Path(env.get("CAMPAIGNS_JOURNEYS") or root / defaults.JOURNEYS_DIR),
        templates_dir=Path(env.get("CAMPAIGNS_TEMPLATES") or root / defaults.TEMPLATES_DIR),
        secret_is_ephemeral=ephemeral,
        mail_from=mail_from,
        frequency_cap=cap,
        frequency_days=days,
        domain_rate_limits=_rate_limits(env.get("DOMAIN_RATE_LIMITS") or ""),
        send_batch=_send_batch(env.get("SEND_BATCH")),
        lease_seconds=_seconds("LEASE_SECONDS", env.get("LEASE_SECONDS"), defaults.LEASE_SECONDS, 2, 3600),
        job_timeout=_seconds("JOB_TIMEOUT", env.get("JOB_TIMEOUT"), defaults.JOB_TIMEOUT, 4, 86_400),
        api_keys=_api_keys(env.get("API_KEYS") or ""),
        trusted_proxies=_trusted_proxies(env.get("TRUSTED_PROXIES")),
    )


def _trusted_proxies(value: str | None) -> int:
    """``TRUSTED_PROXIES``: how many proxies (load balancers) in front of the web app add an
    X-Forwarded-For hop; 0 (the default) trusts none and uses the connection's address."""
    if not value:
        return 0
    if not re.fullmatch(r"\s*[0-9]\s*", value):
        raise ConfigError(f"TRUSTED_PROXIES: {value!r} is not a number of proxies from 0 to 9")
    return int(value)


def _api_keys(value: str) -> tuple[str, ...]:
    """``API_KEYS``: comma-separated keys for the product API (``Authorization: Bearer KEY``)."""
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    for key in keys:
        if len(key) < 16 or not re.fullmatch(r"[A-Za-z0-9_.~+/=-]+", key):
            raise ConfigError("API_KEYS: each key must be 16+ characters of letters, digits and - _ . ~ + / =, separated by commas")
    return keys


def _send_batch(value: str | None) -> int:
    if not value:
        return defaults.SEND_BATCH
    if not re.fullmatch(r"\s*[0-9]{1,4}\s*", value) or not 1 <= int(value) <= 1000:
        raise ConfigError(f"SEND_BATCH: {value!r} is not a whole number from 1 to 1000 (messages a worker sends per commit)")
    return int(value)


def _seconds(name: str, value: str | None, default: int, low: int, high: int) -> int:
    """A whole number of seconds from ``low`` to ``high``."""
    if not value:
        return default
    if not re.fullmatch(r"\s*[0-9]{1,6}\s*", value) or not low <= int(value) <= high:
        raise ConfigError(f"{name}: {value!r} is not a whole number of seconds from {low} to {high}")
    return int(value)


def _frequency(value: str | None) -> tuple[int, int]:
    """``FREQUENCY_CAP`` as ``3/7d``: at most 3 marketing emails per contact per 7 days."""
    if not value:
        return defaults.FREQUENCY_CAP, defaults.FREQUENCY_DAYS
    match = re.fullmatch(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*d(ays?)?\s*", value)
    if not match or int(match.group(2)) == 0:
        raise ConfigError(f"FREQUENCY_CAP: {value!r} is not '<count>/<days>d', e.g. 3/7d (0/7d turns the cap off)")
    return int(match.group(1)), int(match.group(2))


def _rate_limits(value: str) -> str:
    from campaigns.ratelimit import parse_limits

    parse_limits(value)  # raises ConfigError naming the variable
    return value
