"""Email transports: hand a rendered message to an SMTP relay, or to a folder of .eml files.

``MAIL_URL`` picks one (:func:`transport_from_url`):

- ``file:///path/to/outbox`` (the default, ``file:///./outbox``: relative to the working
  folder): each message becomes ``<outbox>/<Message-ID>.eml``, written atomically. Sending
  the same message again overwrites its file, so a retried send leaves one file.
- ``smtp://user:pass@host:587``: STARTTLS when the server offers it (``?starttls=off`` to
  never use it, ``?starttls=required`` to refuse a server without it), AUTH when the URL has
  credentials. ``smtps://user:pass@host:465``: TLS from the first byte. User and password
  are percent-decoded (``p%40ss`` is ``p@ss``). Other options: ``?timeout=30`` (seconds) and
  ``?helo=name`` (the EHLO name; default: this machine's FQDN).

An :class:`SMTPTransport` keeps one connection open across sends (a worker sends thousands of
messages over it). If the server has dropped it in the meantime (idle timeout, a restart,
``421`` when it will take no more), the transport notices at the first command of the next
message, reconnects and sends once more, without the caller seeing anything: the server had
not accepted that message, so nothing is sent twice. Any other failure is raised:

- :class:`TemporaryFailure`: try again later. A ``4xx`` reply, a refused, dropped or timed
  out connection, and every failure before a message is under way (greeting, EHLO, STARTTLS,
  AUTH), whatever its code: a wrong password or a relay that refuses us says nothing about
  the recipient, so it must never bounce the message nor suppress the address.
- :class:`PermanentFailure`: a ``5xx`` reply to the message itself (MAIL, RCPT, DATA): a
  bounce. :attr:`PermanentFailure.bad_address` tells whether the address itself was refused
  (``5.1.x``, or 550/551/553 to RCPT without an enhanced code): only that should suppress it,
  since a rejected sender or content is not the recipient's fault.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import smtplib
import ssl
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from typing import Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit

from campaigns.channels.base import SENT, Receipt, Status
from campaigns.content.mime import OutgoingEmail
from campaigns.exceptions import ConfigError

SMTP_TIMEOUT = 30.0
"""Seconds to wait for the relay on any one step (connect, a reply, sending DATA)."""

STARTTLS_MODES = ("auto", "off", "required")

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]")

log = logging.getLogger("campaigns.transport")


class DeliveryError(Exception):
    """A message was not delivered. ``code`` is the SMTP reply code when there was one,
    ``stage`` where it happened (``connect``, ``mail``, ``rcpt``, ``data``, ``write``)."""

    def __init__(
        self,
        reason: str,
        code: int | None = None,
        *,
        stage: str | None = None,
        enhanced: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.stage = stage
        self.enhanced = enhanced
        """The RFC 3463 status (``5.1.1``) the reply started with, if any."""


class TemporaryFailure(DeliveryError):
    """Not delivered this time; try again later (4xx, connection refused, dropped, timeout)."""


class PermanentFailure(DeliveryError):
    """The relay refused this message for good (5xx to MAIL, RCPT or DATA): a bounce."""

    @property
    def bad_address(self) -> bool:
        """Whether the recipient's address itself was refused (so it should be suppressed)."""
        if self.enhanced:
            return self.enhanced.startswith("5.1.")
        return self.stage == "rcpt" and self.code in (550, 551, 553)


class Transport(Protocol):
    """Where rendered messages go. ``send`` raises :class:`DeliveryError` subclasses only."""

    def send(self, mail: OutgoingEmail) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def push_mail(transport: Transport, mail: OutgoingEmail) -> Receipt:
    """Hand ``mail`` to ``transport``; a refusal becomes the receipt of a bounce or a retry.
    Anything else (an abort: a job timeout, a lost lease) propagates."""
    try:
        transport.send(mail)
    except PermanentFailure as exc:
        source = f"bounce {exc.code or ''} {exc.enhanced or ''}".strip()
        return Receipt(Status.BOUNCED, str(exc)[:2000], exc.bad_address, source)
    except TemporaryFailure as exc:
        return Receipt(Status.RETRY, str(exc))
    return SENT


# -- the file outbox -----------------------------------------------------------------------


class FileTransport:
    """Writes each message to ``<directory>/<Message-ID>.eml``: an outbox to try things out.

    Written to a temporary file and renamed, so a reader never sees half a message and a
    crash leaves at most a hidden ``.*.tmp`` file behind.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        # Checked now, made on the first send: building a transport (a dashboard page that
        # may send a test) must not leave an empty folder behind.
        existing = next((p for p in (self.directory, *self.directory.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise OSError(f"{existing or self.directory} is not a folder this process may write in")
        self._made = False

    def path_for(self, mail: OutgoingEmail) -> Path:
        """Where ``mail`` is written: its Message-ID, made safe as a file name."""
        name = mail.message_id.strip().removeprefix("<").removesuffix(">")
        safe = _UNSAFE_NAME.sub("_", name)[:180]
        if safe != name or not safe or safe.startswith("."):
            # Two ids must not share a file after the clean-up.
            safe = f"{safe.lstrip('.')}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
        return self.directory / f"{safe}.eml"

    def send(self, mail: OutgoingEmail) -> None:
        path = self.path_for(mail)
        temporary = None
        try:
            if not self._made:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._made = True
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            with os.fdopen(descriptor, "wb") as file:
                file.write(mail.raw)
            os.replace(temporary, path)
        except OSError as exc:
            if temporary is not None:
                with suppress(OSError):
                    os.unlink(temporary)
            raise TemporaryFailure(f"cannot write {path}: {exc}", stage="write") from exc

    def abort(self) -> None:
        """Nothing to drop: each send writes a file of its own (an interrupted one leaves
        at most a hidden ``.tmp``)."""

    def close(self) -> None:
        """Nothing to release: each send opens and closes its own file."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the dry run's stand-in ----------------------------------------------------------------


class RecordingTransport:
    """Keeps what would have been sent and sends nothing: the transport of a dry run
    (``campaigns simulate``) and of tests that look at the messages themselves."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send(self, mail: OutgoingEmail) -> None:
        self.sent.append(mail)

    def abort(self) -> None:
        """Nothing is in flight: every send is a list append."""

    def close(self) -> None:
        self.sent.clear()


# -- SMTP ----------------------------------------------------------------------------------


class _Stale(Exception):
    """The server had closed the connection before this message got under way."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class SMTPTransport:
    """Sends over one SMTP connection, opened on the first send and kept for the next.

    Thread-safe (sends are serialised); use one per worker process. Call :meth:`close` at
    the end to say QUIT.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        implicit_tls: bool = False,
        starttls: str = "auto",
        timeout: float = SMTP_TIMEOUT,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if starttls not in STARTTLS_MODES:
            raise ValueError(f"starttls must be one of {', '.join(STARTTLS_MODES)}")
        self.host = host
        self.port = port or (465 if implicit_tls else 25)
        self.username = username
        self.password = password
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._ssl_context = ssl_context
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self.connections = 0
        """How many connections this transport has opened (for logs and tests)."""

    @classmethod
    def from_url(cls, url: str) -> SMTPTransport:
        """``smtp://user:pass@host:port?starttls=off&timeout=10&helo=name`` or ``smtps://``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"MAIL_URL: expected smtp://host:port or smtps://..., got {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"MAIL_URL: bad port in {_redact(url)!r}") from None
        options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(options) - {"starttls", "timeout", "helo"}
        if unknown:
            raise ConfigError(
                f"MAIL_URL: unknown option {sorted(unknown)[0]!r}; options: starttls, timeout, helo"
            )
        starttls = options.get("starttls", "auto").lower()
        if starttls not in STARTTLS_MODES:
            raise ConfigError(f"MAIL_URL: starttls must be one of {', '.join(STARTTLS_MODES)}")
        try:
            timeout = float(options.get("timeout", SMTP_TIMEOUT))
        except ValueError:
            raise ConfigError("MAIL_URL: timeout must be a number of seconds") from None
        if not timeout > 0:
            raise ConfigError("MAIL_URL: timeout must be a number of seconds above 0")
        return cls(
            parts.hostname,
            port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            implicit_tls=parts.scheme == "smtps",
            starttls=starttls,
            timeout=timeout,
            local_hostname=options.get("helo") or None,
        )

    # -- sending -----------------------------------------------------------------

    def send(self, mail: OutgoingEmail) -> None:
        """Deliver ``mail`` to the relay, or raise :class:`DeliveryError`."""
        with self._lock:
            for attempt in (1, 2):
                reused = self._connection is not None
                connection = self._connection or self._connect()
                try:
                    self._transaction(connection, mail)
                    return
                except _Stale as exc:
                    self._drop()
                    if reused and attempt == 1:
                        continue  # the server had given up on an old connection: once more
                    raise TemporaryFailure(
                        f"{self._where()}: {exc}", exc.code, stage="mail"
                    ) from exc

    def _transaction(self, connection: smtplib.SMTP, mail: OutgoingEmail) -> None:
        options = [f"SIZE={len(mail.raw)}"] if connection.has_extn("size") else []
        try:
            code, reply = connection.mail(mail.mail_from, options)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Stale(f"connection lost ({exc})") from exc
        if code == 421:
            raise _Stale(_text(code, reply), code)
        if code != 250:
            raise self._refused(connection, code, reply, "mail")
        stage = "rcpt"
        try:
            code, reply = connection.rcpt(mail.to)
            if code not in (250, 251):
                raise self._refused(connection, code, reply, "rcpt")
            for copy in mail.cc:  # a refused copy leaves the message to its main recipient
                code, reply = connection.rcpt(copy)
                if code not in (250, 251):
                    log.warning("%s: RCPT %s refused: %s", self._where(), copy, _text(code, reply))
            stage = "data"
            code, reply = connection.data(mail.raw)
        except smtplib.SMTPResponseException as exc:  # DATA answered with other than 354
            raise self._refused(connection, exc.smtp_code, exc.smtp_error, stage) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise TemporaryFailure(
                f"{self._where()}: connection lost during {stage.upper()} ({exc})", stage=stage
            ) from exc
        if code != 250:
            raise self._refused(connection, code, reply, "data")

    def _refused(
        self, connection: smtplib.SMTP, code: int, reply: bytes | str, stage: str
    ) -> DeliveryError:
        """The exception for a refusal, leaving the connection ready for the next message."""
        if code == 421:
            self._drop()  # the server is closing this connection
        else:
            try:
                connection.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        message = f"{self._where()}: {stage.upper()} refused: {_text(code, reply)}"
        enhanced = _enhanced(reply)
        if 500 <= code < 600:
            return PermanentFailure(message, code, stage=stage, enhanced=enhanced)
        return TemporaryFailure(message, code, stage=stage, enhanced=enhanced)

    # -- the connection ----------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        connection: smtplib.SMTP | None = None
        try:
            if self.implicit_tls:
                connection = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                connection = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            connection.ehlo_or_helo_if_needed()
            encrypted = self.implicit_tls
            if not encrypted and self.starttls != "off" and connection.has_extn("starttls"):
                connection.starttls(context=self._context())
                connection.ehlo()
                encrypted = True
            if not encrypted and self.starttls == "required":
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if self.username is not None:
                if not encrypted and self.starttls != "off" and not _is_loopback(self.host):
                    raise smtplib.SMTPNotSupportedError(
                        "refusing to send the password unencrypted: the server offers no"
                        " STARTTLS (add ?starttls=off to the URL to allow it)"
                    )
                connection.login(self.username, self.password or "")
        except smtplib.SMTPResponseException as exc:
            _close(connection)
            raise TemporaryFailure(
                f"{self._where()}: {_text(exc.smtp_code, exc.smtp_error)}",
                exc.smtp_code,
                stage="connect",
                enhanced=_enhanced(exc.smtp_error),
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, timeout, TLS, no AUTH
            _close(connection)
            raise TemporaryFailure(f"{self._where()}: {exc}", stage="connect") from exc
        self._connection = connection
        self.connections += 1
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        _close(connection)

    def _where(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def abort(self) -> None:
        """Drop the connection without a goodbye: a send was interrupted (a job timeout) and
        the conversation is in an unknown state. The next send opens a new one."""
        connection, self._connection = self._connection, None
        _close(connection)

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    _close(connection)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(connection: smtplib.SMTP | None) -> None:
    if connection is not None:
        with suppress(Exception):
            connection.close()


def _text(code: int, reply: bytes | str) -> str:
    words = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(words.split())}"


def _enhanced(reply: bytes | str) -> str | None:
    words = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    match = _ENHANCED.match(words)
    return match.group(1) if match else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


# -- MAIL_URL --------------------------------------------------------------------------


def transport_from_url(url: str) -> FileTransport | SMTPTransport:
    """The transport ``MAIL_URL`` names: ``file:///dir``, ``smtp://...`` or ``smtps://...``.

    A relative outbox (``file:///./outbox`` or ``file://./outbox``) is taken from the working
    folder now, and created if missing.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("smtp", "smtps"):
        return SMTPTransport.from_url(url)
    if scheme != "file":
        raise ConfigError(
            f"MAIL_URL: unsupported scheme {scheme!r}; use file:///path/to/outbox,"
            " smtp://user:pass@host:587 or smtps://user:pass@host:465"
        )
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc in (".", ".."):  # file://./outbox
        folder = Path(parts.netloc + path)
    elif parts.netloc not in ("", "localhost"):
        raise ConfigError(f"MAIL_URL: a file outbox must be on this machine, got {url!r}")
    elif path.startswith(("/./", "/../")) or path in ("/.", "/.."):  # file:///./outbox
        folder = Path(path[1:])
    else:
        folder = Path(path)
    if not str(folder).strip() or folder == Path("/"):
        raise ConfigError(f"MAIL_URL: no outbox folder in {url!r}")
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    try:
        return FileTransport(folder)
    except OSError as exc:
        raise ConfigError(f"MAIL_URL: cannot create the outbox {folder}: {exc}") from exc
