"""Configuration from environment variables, with the defaults of :mod:`campaigns.defaults`.

One frozen object carries every setting; the CLI, ``web.py`` and ``worker.py`` build it once
with :func:`load` and pass it on. Bad values raise :class:`ConfigError` naming the variable,
in one line, whatever the text: a value accepted here is one the rest of the code can use as
it is (an address that makes exactly one From header, a database URL that names a
database). Whether the services answer is checked by :mod:`campaigns.preflight` when a
process starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.errors import ObsoleteHeaderDefect
from email.headerregistry import AddressHeader, HeaderRegistry
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from campaigns import currency, defaults
from campaigns.exceptions import ConfigError

_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")
_MAIL_SCHEMES = ("file", "smtp", "smtps")


@dataclass(frozen=True)
class Mailbox:
    """``MAIL_FROM`` parsed: ``address`` is ASCII (an IDN domain in its ``xn--`` form) and
    goes into the From header and the SMTP envelope as it is; ``name`` is the display name."""

    address: str
    name: str | None = None


# -- MAIL_FROM -----------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Bidi embeddings, overrides, isolates and marks make a display name read differently from
# what it is ("moc.elpmaxe"); the other format characters (ZWJ, ZWNJ) are real writing.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# The obsolete phrase syntax of RFC 5322 4.1, "Acme Inc. <cs@acme.com>": the parser reports it,
# and it is harmless, as the From header is rebuilt from the parsed name (then quoted).
_PHRASE_DEFECTS = ("period in 'phrase'", "comment found without atom")
_SINGLE_LABEL_DOMAINS = ("localhost",)  # a development SMTP sink; nothing else routes without a dot


def _bad_character(value: str) -> str | None:
    """The first character that must not reach a header: controls (CR, LF, NUL, DEL, C1),
    line and paragraph separators, undecodable bytes (surrogates) and bidi controls."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            return ch
    return None


def parse_mail_from(value: str) -> Mailbox:
    """``MAIL_FROM`` as exactly one mailbox, ``Name <local@domain>`` or ``local@domain``.

    Parsed by the email package's header parser, strictly: any defect it reports refuses the
    value (save a period in an unquoted name, as in ``Acme Inc. <cs@acme.com>``, which is
    common and harmless), and so do control characters anywhere, groups, lists, quoted or non-ASCII
    local parts, domain
    literals, and a domain that is not a dot-separated host name (``localhost`` aside).
    """
    example = "e.g. 'Customer Success <cs@example.com>'"
    bad = _bad_character(value)
    if bad is not None:
        raise ConfigError(
            f"MAIL_FROM: contains the control character {bad!r}; write one line, {example}"
        )
    if len(value) > 998:  # the longest line a message may carry
        raise ConfigError("MAIL_FROM: longer than 998 characters")
    try:
        header = HeaderRegistry()("From", value)
        groups, found = cast(AddressHeader, header).groups, header.defects
    except (
        Exception
    ):  # on hostile text the parser raises IndexError, AttributeError, TypeError, ValueError...
        raise ConfigError(f"MAIL_FROM: not an address: {value!r}; {example}") from None
    defects = tuple(
        d for d in found if not (isinstance(d, ObsoleteHeaderDefect) and str(d) in _PHRASE_DEFECTS)
    )
    if defects or not groups or not groups[0].addresses:
        raise ConfigError(f"MAIL_FROM: not an address: {value!r}; {example}")
    if len(groups) > 1 or groups[0].display_name is not None or len(groups[0].addresses) > 1:
        raise ConfigError(f"MAIL_FROM: one sender only, got {value!r}; {example}")
    mailbox = groups[0].addresses[0]
    bad = _bad_character(mailbox.display_name)  # an encoded word (=?utf-8?q?=0D?=) may hide one
    if bad is not None:
        raise ConfigError(f"MAIL_FROM: the name contains the control character {bad!r}")
    name = " ".join(mailbox.display_name.split())
    local = mailbox.username
    if not local or len(local) > 64 or not _DOT_ATOM.fullmatch(local):
        raise ConfigError(
            f"MAIL_FROM: {value!r} has no usable local part (ASCII letters, digits and "
            f"!#$%&'*+/=?^_`{{|}}~- between dots, 64 at most); {example}"
        )
    domain = _mail_domain(mailbox.domain)
    if domain is None:
        raise ConfigError(
            f"MAIL_FROM: {mailbox.domain!r} is not a domain name; use a host name with a dot, "
            "e.g. cs@example.com (or localhost)"
        )
    return Mailbox(address=f"{local}@{domain}", name=name or None)


def _mail_domain(domain: str) -> str | None:
    """``domain`` in ASCII (IDNA, as :mod:`campaigns.content.mime` encodes recipients), or None if
    it is not a host name: empty, a literal (``[1.2.3.4]``), an IP address, one label."""
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
        ascii_domain.encode("ascii").decode("idna")  # an xn-- label must decode, too
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if len(labels) == 1:
        return ascii_domain if ascii_domain.lower() in _SINGLE_LABEL_DOMAINS else None
    if labels[-1].isdigit():  # 192.168.0.1: an address, and no TLD is numeric
        return None
    return ascii_domain


# -- SECRET_KEY ----------------------------------------------------------------------------

SECRET_MIN_LENGTH = 16
SECRET_MIN_DISTINCT = 8


SECRET_FILE = "secret_key"
"""The file in the instance folder that keeps the generated ``SECRET_KEY`` of an installation
that sets none (:func:`instance_secret`)."""


def _secret_key(value: str | None) -> tuple[str, bool]:
    """``SECRET_KEY`` and whether it was made up for this process (unset or empty).

    The rule, simple on purpose: 16 characters or more, no whitespace at either end (a stray
    newline from a paste would sign links no other process can check), no control characters,
    and at least 8 different characters, which refuses ``aaaaaaaaaaaaaaaa`` and ``1212...``.
    ``python -c 'import secrets; print(secrets.token_urlsafe(32))'`` makes a good one.
    """
    if not value:
        return secrets.token_urlsafe(32), True
    return _checked_secret(value, "SECRET_KEY"), False


def _checked_secret(value: str, name: str) -> str:
    advice = (
        "use 16+ random characters, e.g. python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'"
    )
    if not value.strip():
        raise ConfigError(f"{name}: only whitespace; {advice}")
    if value != value.strip():
        raise ConfigError(
            f"{name}: starts or ends with whitespace (a stray space or newline?); remove it"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ConfigError(
            f"{name}: contains control characters or bytes that are not UTF-8; {advice}"
        )
    if len(value) < SECRET_MIN_LENGTH:
        raise ConfigError(f"{name}: too short ({len(value)} characters); {advice}")
    if len(set(value)) < SECRET_MIN_DISTINCT:
        raise ConfigError(
            f"{name}: only {len(set(value))} different characters, too easy to guess; {advice}"
        )
    return value


def instance_folder(env: Mapping[str, str], database_url: str, root: Path) -> Path:
    """Where an installation keeps what it generates for itself (the secret, the demo's
    sign-in): ``CAMPAIGNS_INSTANCE``, else ``instance/`` beside the SQLite file, else
    ``instance/`` in ``root`` (the working folder)."""
    if env.get("CAMPAIGNS_INSTANCE"):
        return Path(env["CAMPAIGNS_INSTANCE"])
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).parent / "instance"
    return root / "instance"


def instance_secret(folder: Path) -> str:
    """The secret kept in ``folder``'s :data:`SECRET_FILE`, generated on first use.

    Created atomically: the key is written to a file of its own (mode 0600), then linked to
    its name, which fails if another process got there first; both then read the one that
    won. So two processes starting together agree, and every later one reads the same key:
    links signed by ``campaigns demo`` open under ``campaigns run``."""
    path = folder / SECRET_FILE
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            fd, draft = tempfile.mkstemp(prefix=".secret-", dir=folder)  # mode 0600
            try:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(secrets.token_urlsafe(32) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(FileExistsError):  # another process won: read theirs
                    os.link(draft, path)
            finally:
                os.unlink(draft)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"SECRET_KEY is unset and {path} cannot be made or read"
            f" ({getattr(exc, 'strerror', None) or exc}); set SECRET_KEY or CAMPAIGNS_INSTANCE"
        ) from None
    return _checked_secret(text.rstrip("\n"), str(path))


# -- URLs ----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs. Up to the last
    ``@``: a password pasted unescaped (``p@ss/word``) must not show in part."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:).*@", r"\1***@", url, flags=re.DOTALL)


def _no_controls(name: str, value: str) -> None:
    bad = _bad_character(value)
    if bad is not None:
        raise ConfigError(f"{name}: contains the control character {bad!r}")


def normalise_database_url(url: str) -> str:
    """``DATABASE_URL`` checked and with the psycopg 3 driver picked for PostgreSQL.

    Accepts the forms people paste (``postgres://``). PostgreSQL needs a host (in the URL, or
    ``?host=/socket/folder``) and a database: without them psycopg silently falls back to the
    client's defaults (the local socket, a database named after the OS user). SQLite needs a
    file: an in-memory database (``sqlite://``, ``:memory:``, ``mode=memory``) is one per
    connection, so the web app, the worker and the CLI would each see a different, empty one.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    hint = "use sqlite:///file.db or postgresql://user@host/db"
    _no_controls("DATABASE_URL", url)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in _DB_SCHEMES:
        raise ConfigError(f"DATABASE_URL: unsupported scheme {scheme!r}; {hint}")
    try:
        parsed = make_url(url)
        port = parsed.port
    except (ArgumentError, ValueError):
        raise ConfigError(f"DATABASE_URL: cannot parse {redact_url(url)!r}; {hint}") from None
    if scheme == "sqlite":
        if parsed.host:  # sqlite://db.file reads as a host named db.file and an in-memory database
            raise ConfigError(
                "DATABASE_URL: SQLite takes a file, not a host: write sqlite:///relative.db or "
                f"sqlite:////absolute/path.db, got {redact_url(url)!r}"
            )
        memory = (
            not parsed.database
            or parsed.database in (":memory:", "file::memory:")
            or parsed.query.get("mode") == "memory"
        )
        if memory:
            raise ConfigError(
                "DATABASE_URL: an in-memory SQLite database is not shared between processes; "
                "name a file, e.g. sqlite:///campaigns.db"
            )
        return url
    if not (parsed.host or parsed.query.get("host")):
        raise ConfigError(
            f"DATABASE_URL: no host in {redact_url(url)!r}; write postgresql://user@host/db"
        )
    if not parsed.database:
        raise ConfigError(
            f"DATABASE_URL: no database name in {redact_url(url)!r}; write "
            "postgresql://user@host/db"
        )
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"DATABASE_URL: port {port} out of range in {redact_url(url)!r}")
    if scheme in ("postgres", "postgresql"):
        return "postgresql+psycopg:" + url.split(":", 1)[1]
    return url


def _redis_url(url: str) -> str:
    """``REDIS_URL`` as redis-py reads it, refusing what it would quietly ignore (a
    database that is not a number: ``redis://host/x`` would be database 0)."""
    from redis.connection import parse_url

    _no_controls("REDIS_URL", url)
    _check_url("REDIS_URL", url, ("redis", "rediss", "unix"))
    parts = urlsplit(url)
    try:
        options = parse_url(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL: {exc} in {redact_url(url)!r}") from None
    if port == 0:  # redis-py would quietly take the default port instead
        raise ConfigError(f"REDIS_URL: port 0 in {redact_url(url)!r}")
    if parts.scheme == "unix":
        if not options.get("path"):
            raise ConfigError(
                f"REDIS_URL: no socket path in {redact_url(url)!r}; write unix:///run/redis.sock"
            )
    elif not parts.hostname:
        raise ConfigError(f"REDIS_URL: no host in {redact_url(url)!r}; write redis://host:6379/0")
    elif not re.fullmatch(r"/?[0-9]{0,5}", parts.path):
        raise ConfigError(
            f"REDIS_URL: the database in {redact_url(url)!r} is not a number; write "
            "redis://host:6379/0"
        )
    return url


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    _no_controls(name, value)  # urlsplit drops CR and LF, and the value would carry them on
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "redis://[oops": a bracketed host that is not an IPv6 address
        raise ConfigError(f"{name}: not a URL ({exc}): {redact_url(value)!r}") from None
    if parts.scheme not in schemes or (
        parts.scheme in ("http", "https", "redis", "rediss") and not parts.netloc
    ):
        raise ConfigError(
            f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
            f"got {redact_url(value)!r}"
        )
    return value


# -- EVENT_SUBSCRIBERS -----------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """One receiver of outgoing events (``EVENT_SUBSCRIBERS``): its name (the outbox rows
    carry it), the URL events are POSTed to, the secret they are signed with, the types it
    wants (empty: all) and whether it wants opens and clicks a machine made."""

    name: str
    url: str
    secret: str = field(repr=False)
    types: tuple[str, ...] = ()
    machine: bool = True

    def wants(self, type_: str) -> bool:
        """Whether this subscriber takes events of ``type_`` (``message.*`` takes a family)."""
        if not self.types:
            return True
        return any(
            t == type_ or t == "*" or (t.endswith(".*") and type_.startswith(t[:-1]))
            for t in self.types
        )


_SUBSCRIBER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SUBSCRIBERS_EXAMPLE = (
    "write name=https://host/path|secret=16+chars[|types=message.*,task.done][|machine=no], "
    "subscribers separated by ';' or spaces"
)


def parse_subscribers(value: str) -> tuple[Subscriber, ...]:
    """``EVENT_SUBSCRIBERS``: ``crm=https://crm.example/hooks|secret=S|types=message.*``, one
    entry per subscriber separated by ``;`` or whitespace. ``types`` is a comma list of event
    types or families (``message.*``), all by default; ``machine=no`` leaves out the opens and
    clicks of image proxies and link scanners. Errors never show a secret."""
    name = "EVENT_SUBSCRIBERS"
    _no_controls(name, value.replace("\n", " ").replace("\t", " "))
    found: dict[str, Subscriber] = {}
    for entry in re.split(r"[;\s]+", value):
        if not entry:
            continue
        head, *options = entry.split("|")
        label, eq, url = head.partition("=")
        if not eq or not _SUBSCRIBER_NAME.fullmatch(label):
            raise ConfigError(
                f"{name}: {label[:40]!r} is not a subscriber name (lower-case letters, digits,"
                f" - and _); {_SUBSCRIBERS_EXAMPLE}"
            )
        if label in found:
            raise ConfigError(f"{name}: the subscriber {label!r} is named twice")
        where = f"{name} ({label})"
        _check_url(where, url, ("http", "https"))
        if not urlsplit(url).hostname:
            raise ConfigError(f"{where}: no host in {redact_url(url)!r}")
        seen: dict[str, str] = {}
        for option in options:
            key, eq, setting = option.partition("=")
            if key not in ("secret", "types", "machine") or not eq:
                shown = key[:20] if eq else "(no '=')"
                raise ConfigError(
                    f"{where}: unknown option {shown!r}; the options are secret=, types= and"
                    " machine="
                )
            if key in seen:
                raise ConfigError(f"{where}: {key}= is given twice")
            seen[key] = setting
        if "secret" not in seen:
            raise ConfigError(f"{where}: no secret=; {_SUBSCRIBERS_EXAMPLE}")
        secret = _checked_secret(seen["secret"], f"{where} secret")
        types = tuple(t.strip() for t in seen.get("types", "").split(",") if t.strip())
        for pattern in types:
            family = pattern[:-1] if pattern.endswith(".*") else None
            known = pattern == "*" or (
                any(t.startswith(family) for t in defaults.OUTBOUND_TYPES)
                if family
                else pattern in defaults.OUTBOUND_TYPES
            )
            if not known:
                raise ConfigError(
                    f"{where}: unknown event type {pattern[:40]!r}; use"
                    f" {', '.join(defaults.OUTBOUND_TYPES)} or a family such as message.*"
                )
        machine = seen.get("machine", "yes").strip().lower()
        if machine not in ("yes", "no", "true", "false", "1", "0"):
            raise ConfigError(f"{where}: machine= takes yes or no, got {machine[:20]!r}")
        found[label] = Subscriber(
            label, url, secret, types, machine=machine in ("yes", "true", "1")
        )
    return tuple(found.values())


# -- CONSENT_RULES -------------------------------------------------------------------------

CONSENT_BASES = ("opt_in", "business_relationship", "published_address")
"""The bases of :class:`campaigns.store.enums.ConsentBasis`, by value (this module imports
nothing of the store; tests/test_consent.py holds the two to each other)."""

CONSENT_GROUPS = ("EU", "*")
"""Rule keys that are not one country: ``EU`` (the member states of the EU and the EEA) and
``*`` (every country no other key names)."""


@dataclass(frozen=True)
class ConsentRules:
    """``CONSENT_RULES`` and ``CONSENT_DEFAULT_COUNTRY`` parsed: for each key (an ISO
    3166-1 alpha-2 country, ``EU`` or ``*``) the bases that let marketing mail go. The rule
    of a contact is worked out by :mod:`campaigns.engine.consent`."""

    rules: Mapping[str, tuple[str, ...]]
    default_country: str = defaults.CONSENT_DEFAULT_COUNTRY


def parse_consent_rules(text: str | None, default_country: str | None = None) -> ConsentRules:
    """``"JP=opt_in,US=opt_in|business_relationship,*=opt_in"``: each key, its bases. Unset
    or empty: :data:`campaigns.defaults.CONSENT_RULES`. A key given twice is refused (which
    one would win is a guess)."""
    example = "e.g. JP=opt_in,US=opt_in|business_relationship,*=opt_in"
    rules: dict[str, tuple[str, ...]] = {}
    source = text if text and text.strip() else defaults.CONSENT_RULES
    _no_controls("CONSENT_RULES", source)
    for part in source.split(","):
        if not part.strip():
            continue
        key, equals, value = part.partition("=")
        key = key.strip().upper()
        if not equals or not (re.fullmatch(r"[A-Z]{2}", key) or key in CONSENT_GROUPS):
            raise ConfigError(
                f"CONSENT_RULES: {part.strip()[:40]!r} is not 'COUNTRY=basis|basis' with a"
                f" two-letter country, EU or *; {example}"
            )
        bases = tuple(b.strip().lower() for b in value.split("|"))
        unknown = [b for b in bases if b not in CONSENT_BASES]
        if unknown or not bases:
            raise ConfigError(
                f"CONSENT_RULES: {key}: unknown basis {unknown[0][:40] if unknown else ''!r};"
                f" use {', '.join(CONSENT_BASES)} joined by |"
            )
        if key in rules:
            raise ConfigError(f"CONSENT_RULES: {key} is given twice; keep one rule per country")
        rules[key] = tuple(dict.fromkeys(bases))
    country = (default_country or defaults.CONSENT_DEFAULT_COUNTRY).strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ConfigError(
            f"CONSENT_DEFAULT_COUNTRY: {(default_country or '')[:40]!r} is not a two-letter"
            " country code (ISO 3166-1 alpha-2), e.g. JP"
        )
    return ConsentRules(rules=rules, default_country=country)


def _retention_days(value: str | None) -> int:
    """``CONSENT_RETENTION_DAYS``: 31 or more (the law asks for a month after the last send)."""
    if not value or not value.strip():
        return defaults.CONSENT_RETENTION_DAYS
    low = defaults.CONSENT_RETENTION_DAYS
    if not re.fullmatch(r"\s*[0-9]{1,5}\s*", value) or int(value) < low:
        raise ConfigError(
            f"CONSENT_RETENTION_DAYS: {value[:40]!r} is not a whole number of days of {low} or"
            " more (records are kept at least a month after the last send)"
        )
    return int(value)


_DEFAULT_MAIL_FROM = parse_mail_from(defaults.MAIL_FROM)


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
    instance_dir: Path = Path("instance")
    """Where the installation keeps what it generates (:func:`instance_folder`)."""
    mail_from: Mailbox = _DEFAULT_MAIL_FROM
    frequency_cap: int = defaults.FREQUENCY_CAP
    frequency_days: int = defaults.FREQUENCY_DAYS
    domain_rate_limits: str = ""
    send_batch: int = defaults.SEND_BATCH
    lease_seconds: int = defaults.LEASE_SECONDS
    job_timeout: int = defaults.JOB_TIMEOUT
    api_keys: tuple[str, ...] = ()
    # The role of each API key given as ``role:KEY`` (a key not named here is an admin's).
    api_key_roles: Mapping[str, str] = field(default_factory=dict)
    trusted_proxies: int = 0
    currencies: currency.Currencies = currency.DEFAULT  # BASE_CURRENCY and CURRENCY_RATES
    global_control_percent: float = defaults.GLOBAL_CONTROL_PERCENT
    task_digest_hour: int = defaults.TASK_DIGEST_HOUR
    task_time_zone: str = defaults.TASK_TIME_ZONE
    dkim: DkimKey | None = None  # DKIM_PRIVATE_KEY_FILE, DKIM_SELECTOR, DKIM_DOMAIN
    event_subscribers: tuple[Subscriber, ...] = ()
    event_max_attempts: int = defaults.EVENT_MAX_ATTEMPTS
    event_backoff_base: int = defaults.EVENT_BACKOFF_BASE
    event_backoff_cap: int = defaults.EVENT_BACKOFF_CAP
    event_timeout: int = defaults.EVENT_TIMEOUT
    event_replay_window: int = defaults.EVENT_REPLAY_WINDOW
    consent_rules: ConsentRules = field(default_factory=lambda: parse_consent_rules(None))
    consent_retention_days: int = defaults.CONSENT_RETENTION_DAYS

    @property
    def segments_file(self) -> Path:
        return self.journeys_dir / defaults.SEGMENTS_FILE

    @property
    def scorecards_file(self) -> Path:
        return self.journeys_dir / defaults.SCORECARDS_FILE


def load(env: Mapping[str, str] | None = None, *, root: Path | None = None) -> Config:
    """Read the settings from ``env`` (default: ``os.environ``).

    Without ``SECRET_KEY``, the settings of the process's environment take the instance
    folder's secret (:func:`instance_secret`, generated once), so that every process of the
    installation signs and checks links alike; a mapping passed in (a test's, a tool's) writes
    no file and gets a random key of its own unless it names ``CAMPAIGNS_INSTANCE``."""
    from_process = env is None or env is os.environ
    env = os.environ if env is None else env
    root = root or Path()  # relative: messages show journeys/x.yaml, not a long path
    database_url = normalise_database_url(env.get("DATABASE_URL") or defaults.DATABASE_URL)
    redis_url = _redis_url(env["REDIS_URL"]) if env.get("REDIS_URL") else None
    mail_url = _check_url("MAIL_URL", env.get("MAIL_URL") or defaults.MAIL_URL, _MAIL_SCHEMES)
    mail = urlsplit(mail_url)
    if mail.scheme in ("smtp", "smtps") and not mail.hostname:
        raise ConfigError(
            f"MAIL_URL: no host in {redact_url(mail_url)!r}; write smtp://user:pass@host:587"
        )
    try:
        mail.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigError(f"MAIL_URL: bad port in {redact_url(mail_url)!r}") from None
    base_url = _check_url("BASE_URL", env.get("BASE_URL") or defaults.BASE_URL, ("http", "https"))
    secret, ephemeral = _secret_key(env.get("SECRET_KEY"))
    instance = instance_folder(env, database_url, root)
    if ephemeral and (from_process or env.get("CAMPAIGNS_INSTANCE")):
        secret, ephemeral = instance_secret(instance), False
    mail_from = parse_mail_from(env.get("MAIL_FROM") or defaults.MAIL_FROM)
    cap, days = _frequency(env.get("FREQUENCY_CAP"))
    api_keys = _api_keys(env.get("API_KEYS") or "")
    return Config(
        database_url=database_url,
        redis_url=redis_url,
        mail_url=mail_url,
        secret_key=secret,
        base_url=base_url.rstrip("/"),
        journeys_dir=Path(env.get("CAMPAIGNS_JOURNEYS") or root / defaults.JOURNEYS_DIR),
        templates_dir=Path(env.get("CAMPAIGNS_TEMPLATES") or root / defaults.TEMPLATES_DIR),
        secret_is_ephemeral=ephemeral,
        instance_dir=instance,
        mail_from=mail_from,
        frequency_cap=cap,
        frequency_days=days,
        domain_rate_limits=_rate_limits(env.get("DOMAIN_RATE_LIMITS") or ""),
        send_batch=_send_batch(env.get("SEND_BATCH")),
        lease_seconds=_seconds(
            "LEASE_SECONDS", env.get("LEASE_SECONDS"), defaults.LEASE_SECONDS, 2, 3600
        ),
        job_timeout=_seconds(
            "JOB_TIMEOUT", env.get("JOB_TIMEOUT"), defaults.JOB_TIMEOUT, 4, 86_400
        ),
        api_keys=tuple(api_keys),
        api_key_roles={key: role for key, role in api_keys.items() if role},
        trusted_proxies=_trusted_proxies(env.get("TRUSTED_PROXIES")),
        currencies=currency.parse(env.get("BASE_CURRENCY"), env.get("CURRENCY_RATES")),
        global_control_percent=_global_control(env.get("GLOBAL_CONTROL_PERCENT")),
        task_digest_hour=_digest_hour(env.get("TASK_DIGEST_HOUR")),
        task_time_zone=_time_zone("TASK_TIME_ZONE", env.get("TASK_TIME_ZONE")),
        dkim=_dkim(env),
        event_subscribers=parse_subscribers(env.get("EVENT_SUBSCRIBERS") or ""),
        event_max_attempts=_count("EVENT_MAX_ATTEMPTS", env.get("EVENT_MAX_ATTEMPTS"), 1, 100),
        event_backoff_base=_seconds(
            "EVENT_BACKOFF_BASE",
            env.get("EVENT_BACKOFF_BASE"),
            defaults.EVENT_BACKOFF_BASE,
            1,
            3600,
        ),
        event_backoff_cap=_backoff_cap(env),
        event_timeout=_seconds(
            "EVENT_TIMEOUT", env.get("EVENT_TIMEOUT"), defaults.EVENT_TIMEOUT, 1, 120
        ),
        event_replay_window=_seconds(
            "EVENT_REPLAY_WINDOW",
            env.get("EVENT_REPLAY_WINDOW"),
            defaults.EVENT_REPLAY_WINDOW,
            30,
            86_400,
        ),
        consent_rules=parse_consent_rules(
            env.get("CONSENT_RULES"), env.get("CONSENT_DEFAULT_COUNTRY")
        ),
        consent_retention_days=_retention_days(env.get("CONSENT_RETENTION_DAYS")),
    )


def _count(name: str, value: str | None, low: int, high: int) -> int:
    """``EVENT_MAX_ATTEMPTS``: a whole number from ``low`` to ``high``."""
    if not value or not value.strip():
        return defaults.EVENT_MAX_ATTEMPTS
    if not re.fullmatch(r"\s*[0-9]{1,4}\s*", value) or not low <= int(value) <= high:
        raise ConfigError(f"{name}: {value!r} is not a whole number from {low} to {high}")
    return int(value)


def _backoff_cap(env: Mapping[str, str]) -> int:
    """``EVENT_BACKOFF_CAP``: seconds, no less than ``EVENT_BACKOFF_BASE``."""
    base = _seconds(
        "EVENT_BACKOFF_BASE", env.get("EVENT_BACKOFF_BASE"), defaults.EVENT_BACKOFF_BASE, 1, 3600
    )
    cap = _seconds(
        "EVENT_BACKOFF_CAP", env.get("EVENT_BACKOFF_CAP"), defaults.EVENT_BACKOFF_CAP, 1, 86_400
    )
    if cap < base:
        raise ConfigError(
            f"EVENT_BACKOFF_CAP: {cap} s is less than EVENT_BACKOFF_BASE ({base} s); raise it"
        )
    return cap


# -- DKIM ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DkimKey:
    """The DKIM signing key, read and checked at start: ``key`` as dkimpy takes it (PEM for
    RSA, the base64 seed for Ed25519) and its ``algorithm`` (``rsa-sha256``,
    ``ed25519-sha256``)."""

    selector: str
    domain: str
    key: bytes
    algorithm: str
    path: Path


_DKIM_VARS = ("DKIM_PRIVATE_KEY_FILE", "DKIM_SELECTOR", "DKIM_DOMAIN")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*")
# The DER prefix of a PKCS#8 Ed25519 private key (RFC 8410); the 32-byte seed follows it.
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")


def _dkim(env: Mapping[str, str]) -> DkimKey | None:
    """``DKIM_PRIVATE_KEY_FILE``, ``DKIM_SELECTOR`` and ``DKIM_DOMAIN``: all three or none."""
    given = {name: (env.get(name) or "").strip() for name in _DKIM_VARS}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"{missing[0]}: not set; DKIM signing needs DKIM_PRIVATE_KEY_FILE, DKIM_SELECTOR "
            "and DKIM_DOMAIN together (or none of them)"
        )
    selector, domain = given["DKIM_SELECTOR"], given["DKIM_DOMAIN"].lower().rstrip(".")
    if not _SELECTOR.fullmatch(selector) or len(selector) > 253:
        raise ConfigError(f"DKIM_SELECTOR: {selector!r} is not a selector; e.g. mail2026")
    if _mail_domain(domain) is None:
        raise ConfigError(f"DKIM_DOMAIN: {domain!r} is not a domain name; e.g. example.com")
    path = Path(given["DKIM_PRIVATE_KEY_FILE"])
    try:
        data = path.read_bytes()[:65_536]
    except OSError as exc:
        raise ConfigError(
            f"DKIM_PRIVATE_KEY_FILE: cannot read {str(path)!r}: {exc.strerror or exc}"
        ) from None
    key, algorithm = _dkim_key(data)
    if key is None:
        raise ConfigError(
            f"DKIM_PRIVATE_KEY_FILE: {str(path)!r} is not an RSA or Ed25519 private key (PEM, or "
            "the base64 Ed25519 key dknewkey writes)"
        )
    return DkimKey(selector, _mail_domain(domain) or domain, key, algorithm, path)


def _dkim_key(data: bytes) -> tuple[bytes | None, str]:
    """The key as dkimpy signs with it, and its algorithm; None when it is neither kind."""
    import base64
    import binascii

    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    text = data.strip()
    if b"-----BEGIN" in text:
        body = b"".join(line for line in text.splitlines() if not line.startswith(b"-----"))
        try:
            der = base64.b64decode(body, validate=False)
        except binascii.Error:
            return None, ""
        if der.startswith(_ED25519_PKCS8) and len(der) == len(_ED25519_PKCS8) + 32:
            return base64.b64encode(der[-32:]), "ed25519-sha256"
        try:
            parse_pem_private_key(text)
        except (UnparsableKeyError, ValueError, IndexError, TypeError):
            return None, ""
        return text, "rsa-sha256"
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None, ""
    return (text, "ed25519-sha256") if len(seed) == 32 else (None, "")


def _digest_hour(value: str | None) -> int:
    """``TASK_DIGEST_HOUR``: the hour (0 to 23, in ``TASK_TIME_ZONE``) daily digests go at."""
    if not value or not value.strip():
        return defaults.TASK_DIGEST_HOUR
    if not re.fullmatch(r"\s*[0-9]{1,2}\s*", value) or int(value) > 23:
        raise ConfigError(
            f"TASK_DIGEST_HOUR: {value!r} is not an hour from 0 to 23 (8: digests go at 8:00)"
        )
    return int(value)


def _time_zone(name: str, value: str | None) -> str:
    """An IANA time zone name (``Asia/Tokyo``, ``Europe/London``, ``UTC``)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not value or not value.strip():
        return defaults.TASK_TIME_ZONE
    zone = value.strip()
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{name}: {value!r} is not a time zone; write an IANA name such as Asia/Tokyo or UTC"
        ) from None
    return zone


def _global_control(value: str | None) -> float:
    """``GLOBAL_CONTROL_PERCENT``: the share of contacts and accounts no journey sends to, in
    percent from 0 to 50 with at most two decimals (``5``, ``2.5``, ``0.25%``); 0 turns it off."""
    if not value or not value.strip():
        return defaults.GLOBAL_CONTROL_PERCENT
    match = re.fullmatch(r"\s*([0-9]{1,2}(?:\.[0-9]{1,2})?)\s*%?\s*", value)
    if not match or float(match.group(1)) > 50:
        raise ConfigError(
            f"GLOBAL_CONTROL_PERCENT: {value!r} is not a percentage from 0 to 50 (e.g. 5 or 2.5);"
            " 0 turns the global control group off"
        )
    return float(match.group(1))


def _trusted_proxies(value: str | None) -> int:
    """``TRUSTED_PROXIES``: how many proxies (load balancers) in front of the web app add an
    X-Forwarded-For hop; 0 (the default) trusts none and uses the connection's address."""
    if not value:
        return 0
    if not re.fullmatch(r"\s*[0-9]\s*", value):
        raise ConfigError(f"TRUSTED_PROXIES: {value!r} is not a number of proxies from 0 to 9")
    return int(value)


API_KEY_ROLES = ("admin", "marketer", "csm", "viewer")
"""The roles an API key may have (``API_KEYS=marketer:KEY``): the dashboard's roles."""


def _api_keys(value: str) -> dict[str, str]:
    """``API_KEYS``: comma-separated keys for the product API (``Authorization: Bearer KEY``),
    each optionally with its role (``viewer:KEY``); a bare key is an admin's. Key -> role
    ('' for a bare key), in the order given."""
    keys: dict[str, str] = {}
    for entry in (k.strip() for k in value.split(",")):
        if not entry:
            continue
        role, colon, key = entry.rpartition(":")
        role = role.strip()
        key = key.strip()
        if colon and role not in API_KEY_ROLES:
            raise ConfigError(
                f"API_KEYS: unknown role {role[:20]!r} before a key; write role:KEY with a role"
                f" of {', '.join(API_KEY_ROLES)}, or the key alone (an admin's)"
            )
        if len(key) < 16 or not re.fullmatch(r"[A-Za-z0-9_.~+/=-]+", key):
            raise ConfigError(
                "API_KEYS: each key must be 16+ characters of letters, digits and - _ . ~ + / =, "
                "separated by commas (optionally after its role: viewer:KEY)"
            )
        keys[key] = role
    return keys


def _send_batch(value: str | None) -> int:
    if not value:
        return defaults.SEND_BATCH
    if not re.fullmatch(r"\s*[0-9]{1,4}\s*", value) or not 1 <= int(value) <= 1000:
        raise ConfigError(
            f"SEND_BATCH: {value!r} is not a whole number from 1 to 1000 (messages a worker "
            "sends per commit)"
        )
    return int(value)


def _seconds(name: str, value: str | None, default: int, low: int, high: int) -> int:
    """A whole number of seconds from ``low`` to ``high``."""
    if not value:
        return default
    if not re.fullmatch(r"\s*[0-9]{1,6}\s*", value) or not low <= int(value) <= high:
        raise ConfigError(
            f"{name}: {value!r} is not a whole number of seconds from {low} to {high}"
        )
    return int(value)


def _frequency(value: str | None) -> tuple[int, int]:
    """``FREQUENCY_CAP`` as ``3/7d``: at most 3 marketing emails per contact per 7 days."""
    if not value:
        return defaults.FREQUENCY_CAP, defaults.FREQUENCY_DAYS
    match = re.fullmatch(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*d(ays?)?\s*", value)
    if not match or int(match.group(2)) == 0:
        raise ConfigError(
            f"FREQUENCY_CAP: {value!r} is not '<count>/<days>d', e.g. 3/7d (0/7d turns the cap off)"
        )
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Limit:
    """At most ``count`` messages to one domain per ``seconds``."""

    count: int
    seconds: int


def parse_limits(text: str | None) -> dict[str, Limit]:
    """``"gmail.com=600/60s,*=3000/60s"``: {"gmail.com": Limit(600, 60), "*": Limit(3000, 60)}.

    Parsed here, with the other settings (the limiter in :mod:`campaigns.engine.ratelimit`
    takes the result), so that checking the configuration imports nothing of the engine."""
    limits: dict[str, Limit] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = re.fullmatch(r"\s*([\w.*-]+)\s*=\s*(\d{1,7})\s*/\s*(\d{1,6})\s*s?\s*", part)
        if not match or int(match.group(3)) == 0:
            raise ConfigError(
                f"DOMAIN_RATE_LIMITS: {part.strip()!r} is not 'domain=count/seconds',"
                " e.g. gmail.com=600/60s"
            )
        limits[match.group(1).lower()] = Limit(int(match.group(2)), int(match.group(3)))
    return limits


def _rate_limits(value: str) -> str:
    parse_limits(value)  # raises ConfigError naming the variable
    return value
