"""The message bytes: a MIME skeleton assembled by hand, and the checks on what goes in it.

Building a message with the ``email`` package's object model costs 2.5-4 ms, more than
everything else in rendering put together; this module assembles the same message from a
skeleton prepared once per sender: ``multipart/alternative`` with the text part first and the
HTML part second, UTF-8, each body quoted-printable when it is nearly all ASCII (English) and
base64 otherwise (Japanese), CRLF line ends, no line over 78 characters except where a header
holds one unbreakable URL. Header values are encoded with :mod:`email.header` /
:mod:`email.utils` (RFC 2047 encoded words, folded on character boundaries). Every message
has Message-ID, Date, List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 one-click).

Addresses and Message-IDs are checked here, before they reach a header or an SMTP envelope:
a bad one is refused with :class:`InvalidAddress` rather than sent half-formed.
"""

from __future__ import annotations

import binascii
import codecs
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from functools import lru_cache

_MAX_LINE = 78


class InvalidAddress(ValueError):
    """An email address that cannot go into a header or an SMTP envelope."""


@dataclass(frozen=True)
class Sender:
    """Who the email is from: ``address`` is also the envelope sender (bounces go there)."""

    address: str
    name: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class OutgoingEmail:
    """A message ready for a transport.

    ``raw`` is the whole message, CRLF line ends, 7-bit ASCII. ``links`` are the original
    destinations of the click URLs in it, by index: store them with the Message row.
    """

    message_id: str
    to: str
    mail_from: str
    subject: str
    raw: bytes
    links: tuple[str, ...]
    cc: tuple[str, ...] = ()  # further envelope recipients, named in the Cc header


_ASCII_BYTES = bytes(range(128))
_B64_LINE = re.compile(rb".{1,76}", re.DOTALL)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
"""A domain name in ASCII (IDNA already applied): what a Message-ID or an address may end in."""
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_MESSAGE_ID = re.compile(r"<[!-=?-~]+@[!-=?-~]+>")  # printable ASCII, no '>' inside


def make_message_id(message: int, domain: str) -> str:
    """A new Message-ID, ``<m{row id}.{random}@{domain}>``: unique even across databases.

    Store it on the Message row before sending: a retry passes it back to
    :meth:`~campaigns.content.render.Renderer.render` so the message keeps its identity.
    """
    if not DOMAIN.fullmatch(domain):
        raise ValueError(f"{domain!r} is not a domain name for a Message-ID")
    return f"<m{int(message)}.{secrets.token_hex(8)}@{domain}>"


def origin_headers(sender: Sender) -> tuple[str, str]:
    """The checked envelope sender, and the header lines every message from ``sender`` shares
    (From, Reply-To): the skeleton, prepared once per sender."""
    mail_from = check_address(sender.address)
    origin = [f"From: {address_field('From', sender.name, mail_from)}"]
    if sender.reply_to:
        reply_to = check_address(sender.reply_to)
        origin.append(f"Reply-To: {address_field('Reply-To', None, reply_to)}")
    return mail_from, "\r\n".join(origin)


def assemble(
    origin: str,
    *,
    message: int,
    message_id: str,
    to: str,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    unsubscribe_url: str | None,
    now: datetime,
    headers: Sequence[str] = (),
    unsubscribe_mailto: str | None = None,
    list_id: str | None = None,
    feedback_id: str | None = None,
) -> bytes:
    """The message bytes: ``origin`` (from :func:`origin_headers`), the recipient's headers
    and the two bodies. Without an ``unsubscribe_url`` (mail to our own staff) there is no
    List-Unsubscribe; ``unsubscribe_mailto`` (``mailto:...``) goes first in it when given.
    ``list_id`` is a whole List-Id value (:func:`list_id_field`), ``feedback_id`` Google's
    four fields; ``headers`` are further ASCII header lines (``Auto-Submitted: ...``).

    A CR or LF in any value given here is refused (:class:`ValueError`): it would end the
    header and start one of the sender's choosing."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # a naive clock is taken to be UTC
    _one_header_line(unsubscribe_url, unsubscribe_mailto, list_id, feedback_id, *headers)
    boundary = "=_" + secrets.token_hex(12)  # "=_" cannot occur in QP or base64 bodies
    unsubscribe: tuple[str, ...] = ()
    if unsubscribe_url is not None:
        uris = f"<{unsubscribe_url}>"
        if unsubscribe_mailto is not None:
            uris = f"<{unsubscribe_mailto}>,\r\n <{unsubscribe_url}>"
        unsubscribe = (
            f"List-Unsubscribe: {uris}",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        )
    if list_id is not None:
        unsubscribe = (f"List-Id: {list_id}", *unsubscribe)
    if feedback_id is not None:
        unsubscribe = (*unsubscribe, f"Feedback-ID: {feedback_id}")
    head = "\r\n".join(
        (
            origin,
            f"To: {address_field('To', to_name, to)}",
            f"Subject: {text_field('Subject', subject)}",
            f"Date: {format_datetime(now)}",
            f"Message-ID: {message_id}",
            *unsubscribe,
            *headers,
            f"X-Campaigns-Message: {int(message)}",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        )
    )
    delimiter = b"\r\n--" + boundary.encode("ascii")
    return b"".join(
        (
            head.encode("ascii"),
            b"\r\n",
            delimiter,
            b"\r\n",
            _body("text/plain", text),
            delimiter,
            b"\r\n",
            _body("text/html", html),
            delimiter,
            b"--\r\n",
        )
    )


def _one_header_line(*values: str | None) -> None:
    for value in values:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError(f"a header value may not contain CR or LF: {value[:60]!r}")


def list_id_field(name: str | None, list_id: str) -> str:
    """A List-Id value (RFC 2919): ``Name <list-id>``, the name RFC 2047 encoded when it is
    not plain ASCII; ``list_id`` is a domain-like identifier (``customers.example.com``)."""
    if not DOMAIN.fullmatch(list_id) or "." not in list_id:
        raise ValueError(f"{list_id!r} is not a List-Id (a domain-like name, RFC 2919)")
    display = one_line(name) if name else ""
    if not display:
        return f"<{list_id}>"
    if display.isascii() and "=?" not in display:
        quoted = formataddr((display, "x@x")).rsplit(" <", 1)[0]
        return f"{quoted} <{list_id}>"
    return f"{text_field('List-Id', display)} <{list_id}>"


def feedback_id(*fields: str) -> str:
    """Google's Feedback-ID, ``a:b:c:SenderId``: each field without ':' (those that are not
    letters, digits, '.', '-' or '_' become '_')."""
    cleaned = [re.sub(r"[^A-Za-z0-9._-]", "_", f)[:64] or "_" for f in fields]
    return ":".join(cleaned)


def _body(content_type: str, body: str) -> bytes:
    """One part: headers, blank line, the body in the shorter transfer encoding."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    data = body.encode("utf-8")
    # Quoted-printable for text that is nearly all ASCII (English: readable, and base64 on
    # ASCII text is a spam sign); base64 once non-ASCII is more than a sprinkle (Japanese):
    # QP triples those bytes, and its encoder pays for each run of them.
    non_ascii = len(data.translate(None, _ASCII_BYTES))
    if non_ascii * 6 < len(data) and non_ascii < 512:
        encoded = quoted_printable(body)
        encoding = b"quoted-printable"
    else:
        flat = binascii.b2a_base64(data.replace(b"\n", b"\r\n"), newline=False)
        encoded = b"\r\n".join(_B64_LINE.findall(flat))
        encoding = b"base64"
    return b"".join(
        (
            b"Content-Type: ",
            content_type.encode("ascii"),
            b'; charset="utf-8"\r\nContent-Transfer-Encoding: ',
            encoding,
            b"\r\n\r\n",
            encoded,
        )
    )


def _qp_escape(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each run of non-ASCII characters as ``=XX`` UTF-8 escapes."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    run = error.object[error.start : error.end].encode("utf-8")
    return "=" + run.hex("=").upper(), error.end


codecs.register_error("campaigns.render.qp", _qp_escape)
_QP_LITERAL = bytes(range(0x20, 0x7F)) + b"\t\n"
_QP_CONTROL = re.compile(rb"[^\t\n\x20-\x7e]")
# Up to 72 characters, then a whole =XX escape or up to two more characters that are not the
# start of one: at most 75, never cut inside an escape.
_QP_CHUNK = re.compile(rb".{1,72}(?:=[0-9A-F]{2}|[^=]{0,2})")


def quoted_printable(text: str) -> bytes:
    """``text`` (``\n`` line ends) as UTF-8 quoted-printable (RFC 2045), CRLF line ends.

    About twice as fast as :func:`binascii.b2a_qp` on MJML's HTML, whose lines run to
    thousands of characters: the ASCII codec escapes, a regular expression cuts the lines.
    """
    data = text.replace("=", "=3D").encode("ascii", "campaigns.render.qp")
    if data.translate(None, _QP_LITERAL):  # control characters: rare, escaped one by one
        data = _QP_CONTROL.sub(lambda m: b"=%02X" % m.group(0)[0], data)
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if line.endswith((b" ", b"\t")):  # whitespace before a line break is escaped
            kept = line.rstrip(b" \t")
            line = lines[i] = kept + b"".join(b"=%02X" % c for c in line[len(kept) :])
        if len(line) > 76:  # soft line breaks
            lines[i] = b"=\r\n".join(_QP_CHUNK.findall(line))
    return b"\r\n".join(lines)


def check_address(address: str) -> str:
    """``address`` as it goes into a header and the envelope: ASCII, IDNA domain."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or local.startswith(".") or ".." in local:
        raise InvalidAddress(f"not a usable email address: {address!r}")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidAddress(f"not a usable email address: {address!r}") from exc
    if not DOMAIN.fullmatch(domain):
        raise InvalidAddress(f"not a usable email address: {address!r}")
    return f"{local}@{domain}"


def check_message_id(message_id: str) -> str:
    """``message_id`` if it can go into a header as it is, else :class:`ValueError`."""
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"not a Message-ID: {message_id!r}")
    return message_id


def one_line(value: str) -> str:
    """Newlines and runs of whitespace become one space: a header is one line."""
    return " ".join(value.split())


@lru_cache(maxsize=4096)
def text_field(name: str, value: str) -> str:
    """An unstructured header value (Subject), folded; RFC 2047 when not plain ASCII.

    ASCII that looks like an encoded word (``=?``) is encoded too, so that it reads back as
    written. Cached: most recipients of a step share their subject.
    """
    if value.isascii() and "=?" not in value:
        return Header(value, header_name=name, maxlinelen=_MAX_LINE).encode(linesep="\r\n")
    # 76: a continuation line is a space and one encoded word, which may not pass 75.
    return Header(value, "utf-8", header_name=name, maxlinelen=76).encode(linesep="\r\n")


def address_field(name: str, display: str | None, address: str) -> str:
    """``Display Name <address>`` with the name quoted or RFC 2047 encoded as needed.

    A name longer than one encoded word (about 15 Japanese characters) is split over several,
    as RFC 2047 requires. Python before 3.14 decodes such an address with a stray space
    where the words meet (CPython gh-128110); mail clients do not.
    """
    display = one_line(display) if display else ""
    if not display:
        return address
    if display.isascii() and "=?" not in display:
        return formataddr((display, address))
    words = text_field(name, display)
    last_line = f"{name}: {words}".rsplit("\n", 1)[-1]
    fold = " " if len(last_line) + len(address) + 3 <= _MAX_LINE else "\r\n "
    return f"{words}{fold}<{address}>"
