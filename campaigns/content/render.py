"""One email per recipient: Jinja on the compiled template, tracked links, MIME bytes.

The template store compiles MJML once per template version; this module personalises it per
recipient and packs the result into a message ready for any transport:

1. **Jinja**, in a sandbox, with autoescaping for the HTML part and without for the text part
   and the subject. Compiled Jinja templates are cached per template version (the compile
   costs far more than a render). Missing optional data renders empty (``{{ contact.role }}``
   with no role, ``{% if invite.join_url %}`` in an email step), and on a dict a key wins
   over a method of the same name (``{{ account.values }}`` is the key).
2. **Links**: every ``http(s)`` ``href`` in the HTML is replaced by a signed click URL whose
   index points into :attr:`OutgoingEmail.links`, the de-duplicated original destinations the
   engine stores on the Message row (the click endpoint redirects only to those: no open
   redirect). Our own signed URLs (unsubscribe, preferences, answers) are left alone: each is
   tracked by its own endpoint. The same destinations are rewritten in the text part too, so
   a click from a text-only reader counts the same as one from the HTML; a URL only the text
   part has stays as written. An open pixel goes just before ``</body>``, with a hidden trap
   link (no text, ``display:none``, ``aria-hidden``): no person can click it, link scanners
   follow it, and the classifier marks what clicked it as a machine.
3. **MIME**, assembled from a skeleton prepared once per sender rather than with the
   ``email`` package's object model (2.5-4 ms a message, more than everything else here put
   together): ``multipart/alternative`` with the text part first and the HTML part second,
   UTF-8, each body quoted-printable when it is nearly all ASCII (English) and base64
   otherwise (Japanese), CRLF line ends, no line over 78 characters except where a header
   holds one unbreakable URL. Header values are encoded with :mod:`email.header` /
   :mod:`email.utils` (RFC 2047 encoded words, folded on character boundaries). Every message
   has Message-ID, Date, List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 one-click).

Nothing here touches the database, the network or the clock: ``now`` is passed in.
"""

from __future__ import annotations

import binascii
import codecs
import html as htmllib
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import ChainableUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

from campaigns.content.templates import CompiledTemplate, TemplateStore
from campaigns.tracking.tokens import TRAP_LINK, Tokens

SCALES = {"nps": range(11), "csat": range(1, 6)}
"""The answer values of each survey scale, in the order the buttons appear."""

TEMPLATE_RECHECK_SECONDS = 5.0
"""How long a renderer trusts a compiled template before asking the store whether the files
changed. The store re-reads and re-hashes every file on each call (milliseconds), far too
slow per recipient; an edited template reaches new messages within this many seconds."""

JINJA_CACHE_SIZE = 256
"""Compiled Jinja templates kept per renderer (per template version, and per subject line)."""

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
class SurveySpec:
    """A survey step: ``scale`` is ``"nps"`` (0-10) or ``"csat"`` (1-5)."""

    scale: str
    question: str | None = None


@dataclass(frozen=True)
class InviteSpec:
    """An invite step: the event, shown in the recipient's time zone, with RSVP links."""

    event_name: str
    starts_at: datetime
    duration: timedelta | None = None
    url: str | None = None
    time_zone: str = "UTC"


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


@dataclass(frozen=True)
class Personalised:
    """The two bodies and the subject for one recipient, before link tracking."""

    subject: str
    html: str
    text: str
    unsubscribe_url: str


def make_message_id(message: int, domain: str) -> str:
    """A new Message-ID, ``<m{row id}.{random}@{domain}>``: unique even across databases.

    Store it on the Message row before sending: a retry passes it back to
    :meth:`Renderer.render` so the message keeps its identity.
    """
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{domain!r} is not a domain name for a Message-ID")
    return f"<m{int(message)}.{secrets.token_hex(8)}@{domain}>"


# -- Jinja -------------------------------------------------------------------------------


class _Environment(SandboxedEnvironment):
    """The sandbox, reading ``a.b`` on a dict as a record: the key ``b`` if there is one
    (even where a dict method has that name), else None, as if the field were empty. So
    ``{% if account.days_to_renewal is not none and account.days_to_renewal <= 30 %}`` holds
    up when the caller has no such field. Dict methods (``.get``) still work."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                if not hasattr(type(obj), attribute):
                    return None
        return super().getattr(obj, attribute)


def _finalize(value: Any) -> Any:
    """``{{ contact.role }}`` prints nothing, not "None", when there is no role."""
    return "" if value is None else value


def _environment(*, autoescape: bool) -> _Environment:
    return _Environment(
        autoescape=autoescape, undefined=ChainableUndefined, finalize=_finalize, cache_size=0
    )


class _LRU:
    """A small thread-safe cache of compiled templates."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._items[key] = value  # most recently used last
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]


# -- the renderer --------------------------------------------------------------------------


class Renderer:
    """Personalises templates per recipient and builds the message bytes.

    One renderer per process (or thread pool) is enough: it is thread-safe, and its caches
    are what make a message cost well under a millisecond beyond Jinja.
    """

    def __init__(
        self,
        store: TemplateStore,
        tokens: Tokens,
        sender: Sender,
        *,
        domain: str = "campaigns.local",
        recheck_seconds: float = TEMPLATE_RECHECK_SECONDS,
    ) -> None:
        if not _DOMAIN.fullmatch(domain):
            raise ValueError(f"{domain!r} is not a domain name for Message-IDs")
        self.store = store
        self.tokens = tokens
        self.sender = sender
        self.domain = domain
        self.recheck_seconds = recheck_seconds
        self._html_env = _environment(autoescape=True)
        self._text_env = _environment(autoescape=False)
        self._bodies = _LRU(JINJA_CACHE_SIZE)
        self._lines = _LRU(JINJA_CACHE_SIZE * 4)
        self._compiled: dict[tuple[str, str], tuple[float, CompiledTemplate]] = {}
        self._track_prefix = f"{tokens.base_url}/t/"
        # The skeleton: header lines that are the same for every message from this sender.
        self._mail_from = _check_address(sender.address)
        origin = [f"From: {_address_field('From', sender.name, self._mail_from)}"]
        if sender.reply_to:
            reply_to = _check_address(sender.reply_to)
            origin.append(f"Reply-To: {_address_field('Reply-To', None, reply_to)}")
        self._origin_headers = "\r\n".join(origin)

    # -- the three stages -----------------------------------------------------------

    def render(
        self,
        *,
        message: int,
        message_id: str | None,
        to: str,
        to_name: str | None,
        template: str,
        locale: str,
        subject: str,
        preheader: str | None,
        context: Mapping[str, Any],
        survey: SurveySpec | None = None,
        invite: InviteSpec | None = None,
        now: datetime,
    ) -> OutgoingEmail:
        """The email for one recipient of one step; ``message`` is the Message row id.

        ``subject`` and ``preheader`` are Jinja strings in the recipient's locale, rendered
        with the same context as the bodies. Pass the stored ``message_id`` on a retry.
        """
        to = _check_address(to)
        parts = self.personalise(
            message=message,
            template=template,
            locale=locale,
            subject=subject,
            preheader=preheader,
            context=context,
            survey=survey,
            invite=invite,
        )
        html, text, links = track_links(
            parts.html, parts.text, self.tokens, message, skip=self._track_prefix
        )
        message_id = _check_message_id(message_id) if message_id else None
        message_id = message_id or make_message_id(message, self.domain)
        raw = self.assemble(
            message=message,
            message_id=message_id,
            to=to,
            to_name=to_name,
            subject=parts.subject,
            html=html,
            text=text,
            unsubscribe_url=parts.unsubscribe_url,
            now=now,
        )
        return OutgoingEmail(
            message_id=message_id,
            to=to,
            mail_from=self._mail_from,
            subject=parts.subject,
            raw=raw,
            links=links,
        )

    def personalise(
        self,
        *,
        message: int,
        template: str,
        locale: str,
        subject: str,
        preheader: str | None,
        context: Mapping[str, Any],
        survey: SurveySpec | None = None,
        invite: InviteSpec | None = None,
    ) -> Personalised:
        """Stage 1: the subject and both bodies rendered for one recipient (Jinja)."""
        compiled = self.compiled(template, locale)
        html_template, text_template = self._templates(compiled)
        values = dict(context)
        unsubscribe_url = self.tokens.unsubscribe_url(message)
        values["unsubscribe_url"] = unsubscribe_url
        values["preferences_url"] = self.tokens.preferences_url(message)
        if survey is not None:
            values["survey"] = survey_context(survey, self.tokens, message, compiled.locale)
        if invite is not None:
            values["invite"] = invite_context(invite, self.tokens, message, compiled.locale)
        # Subject and preheader may use everything above, e.g. {{ invite.event_name }}.
        values["subject"] = rendered_subject = self._line(subject, values)
        values["preheader"] = self._line(preheader, values) if preheader else ""
        return Personalised(
            subject=rendered_subject,
            html=html_template.render(values),
            text=text_template.render(values),
            unsubscribe_url=unsubscribe_url,
        )

    def assemble(
        self,
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
    ) -> bytes:
        """Stage 3: the message bytes (stage 2 is :func:`track_links`). Without an
        ``unsubscribe_url`` (mail to our own staff) there is no List-Unsubscribe; ``headers``
        are further ASCII header lines (``Auto-Submitted: auto-generated``)."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)  # a naive clock is taken to be UTC
        boundary = "=_" + secrets.token_hex(12)  # "=_" cannot occur in QP or base64 bodies
        unsubscribe = (
            (
                f"List-Unsubscribe: <{unsubscribe_url}>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            )
            if unsubscribe_url is not None
            else ()
        )
        head = "\r\n".join(
            (
                self._origin_headers,
                f"To: {_address_field('To', to_name, to)}",
                f"Subject: {_text_field('Subject', subject)}",
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

    # -- caches ------------------------------------------------------------------

    def compiled(self, template: str, locale: str) -> CompiledTemplate:
        """The compiled template, asking the store again only every ``recheck_seconds``."""
        key = (template, locale)
        now = time.monotonic()
        cached = self._compiled.get(key)
        if cached is not None and now - cached[0] < self.recheck_seconds:
            return cached[1]
        compiled = self.store.compile(template, locale)
        self._compiled[key] = (now, compiled)
        return compiled

    def _templates(self, compiled: CompiledTemplate) -> tuple[Template, Template]:
        pair: tuple[Template, Template] | None = self._bodies.get(compiled.hash)
        if pair is None:
            pair = (
                self._html_env.from_string(compiled.html),
                self._text_env.from_string(compiled.text),
            )
            self._bodies.put(compiled.hash, pair)
        return pair

    def _line(self, source: str, values: Mapping[str, Any]) -> str:
        """A one-line Jinja string (subject, preheader), rendered without escaping."""
        if "{" not in source:
            return _one_line(source)
        compiled: Template | None = self._lines.get(source)
        if compiled is None:
            compiled = self._text_env.from_string(source)
            self._lines.put(source, compiled)
        return _one_line(compiled.render(values))


def _one_line(value: str) -> str:
    """Newlines and runs of whitespace become one space: a header is one line."""
    return " ".join(value.split())


# -- survey and invite context ---------------------------------------------------------

_CSAT_WORDS = {
    "en": ("Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"),
    "ja": ("とても不満", "不満", "どちらでもない", "満足", "とても満足"),
}
_NPS_ENDS = {
    "en": ("Not at all likely", "Extremely likely"),
    "ja": ("まったく思わない", "非常にそう思う"),
}


def _language(locale: str) -> str:
    return locale.lower().replace("_", "-").split("-", 1)[0]


def survey_context(survey: SurveySpec, tokens: Tokens, message: int, locale: str) -> dict[str, Any]:
    """``survey`` for the templates: one option per score, each with its signed answer URL.

    ``label`` is the number itself (the shipped templates show it on a small button);
    ``description`` says what it means in the locale's words where the scale names it
    (every CSAT score, the two ends of NPS), else ``""``.
    """
    if survey.scale not in SCALES:
        raise ValueError(f"unknown survey scale {survey.scale!r}; use 'nps' or 'csat'")
    language = _language(locale)
    options = []
    for value in SCALES[survey.scale]:
        if survey.scale == "csat":
            description = _CSAT_WORDS.get(language, _CSAT_WORDS["en"])[value - 1]
        else:
            ends = _NPS_ENDS.get(language, _NPS_ENDS["en"])
            description = ends[0] if value == 0 else ends[1] if value == 10 else ""
        options.append(
            {
                "value": value,
                "label": str(value),
                "description": description,
                "url": tokens.answer_url(message, value),
            }
        )
    return {"scale": survey.scale, "question": survey.question, "options": options}


def invite_context(invite: InviteSpec, tokens: Tokens, message: int, locale: str) -> dict[str, Any]:
    """``invite`` for the templates: times in the recipient's zone and words, RSVP URLs."""
    return {
        "event_name": invite.event_name,
        "starts_at": format_starts_at(invite.starts_at, invite.time_zone, locale),
        "duration": format_duration(invite.duration, locale),
        "join_url": invite.url or "",
        "rsvp_yes_url": tokens.answer_url(message, "yes"),
        "rsvp_no_url": tokens.answer_url(message, "no"),
    }


_WEEKDAYS_JA = "月火水木金土日"
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        # An unknown zone is shown in UTC and labelled so: still the right moment.
        return ZoneInfo("UTC")


def format_starts_at(starts_at: datetime, time_zone: str, locale: str) -> str:
    """When an event starts, in the recipient's time zone and words.

    ``ja``: ``2027年1月20日(水) 16:00``, with the zone's abbreviation after it unless it is
    Japan time. Otherwise English: ``Wednesday, January 20, 2027 at 4:00 PM (JST)``.
    """
    if starts_at.tzinfo is None:
        raise ValueError("an event's starts_at needs a UTC offset")
    local = starts_at.astimezone(_zone(time_zone))
    label = local.tzname() or "UTC"
    if _language(locale) == "ja":
        text = f"{local.year}年{local.month}月{local.day}日({_WEEKDAYS_JA[local.weekday()]}) {local.hour:02d}:{local.minute:02d}"
        return text if label == "JST" else f"{text} ({label})"
    hour = local.hour % 12 or 12
    noon = "AM" if local.hour < 12 else "PM"
    return f"{_WEEKDAYS_EN[local.weekday()]}, {_MONTHS_EN[local.month - 1]} {local.day}, {local.year} at {hour}:{local.minute:02d} {noon} ({label})"


def format_duration(duration: timedelta | None, locale: str) -> str:
    """``60分`` / ``60 minutes`` up to two hours, then ``2時間30分`` / ``2 hours 30 minutes``."""
    if duration is None:
        return ""
    minutes = round(duration.total_seconds() / 60)
    if minutes <= 0:
        return ""
    hours, rest = divmod(minutes, 60)
    if _language(locale) == "ja":
        if minutes <= 120:
            return f"{minutes}分"
        return f"{hours}時間{rest}分" if rest else f"{hours}時間"
    if minutes <= 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    text = f"{hours} hours"
    return f"{text} {rest} minute{'s' if rest != 1 else ''}" if rest else text


# -- links ---------------------------------------------------------------------------------

_HREF = re.compile(r"""(<a\s[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_TRAILING = ".,;:!?)]'"


def track_links(
    html: str, text: str, tokens: Tokens, message: int, *, skip: str | None = None
) -> tuple[str, str, tuple[str, ...]]:
    """Stage 2: click URLs for every ``http(s)`` link, and the open pixel.

    Returns the new HTML and text and the destinations, de-duplicated, in order of first
    appearance: the click URL for ``links[i]`` carries ``i``. URLs starting with ``skip``
    (default: ``{base_url}/t/``, our own signed URLs) are left alone.
    """
    skip = skip or f"{tokens.base_url}/t/"
    index: dict[str, int] = {}
    clicks: list[str] = []

    def rewrite(match: re.Match[str]) -> str:
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        url = (htmllib.unescape(raw) if "&" in raw else raw).strip()
        if not url[:8].lower().startswith(("http://", "https://")) or url.startswith(skip):
            return match.group(0)
        position = index.get(url)
        if position is None:
            position = index[url] = len(index)
            clicks.append(tokens.click_url(message, position))
        return f'{match.group(1)}"{htmllib.escape(clicks[position])}"'

    html = _HREF.sub(rewrite, html)
    trap = f'<a href="{tokens.click_url(message, TRAP_LINK)}" style="display:none;font-size:0;line-height:0" aria-hidden="true" tabindex="-1"></a>'
    pixel = (
        trap
        + f'<img src="{tokens.open_url(message)}" width="1" height="1" alt="" style="display:none" />'
    )
    end = html.rfind("</body>")
    html = html[:end] + pixel + html[end:] if end >= 0 else html + pixel
    if index:
        text = _TEXT_URL.sub(lambda m: _text_click(m.group(0), index, clicks), text)
    return html, text, tuple(index)


def _text_click(found: str, index: Mapping[str, int], clicks: list[str]) -> str:
    """The click URL for a URL in the text part, if the HTML tracked it; else as written.

    A URL followed by punctuation ("see https://x.example/a.") is matched with the
    punctuation, so it is tried without it too.
    """
    url, tail = found, ""
    while url:
        position = index.get(url)
        if position is not None:
            return clicks[position] + tail
        if url[-1] not in _TRAILING:
            break
        url, tail = url[:-1], url[-1] + tail
    return found


# -- MIME -------------------------------------------------------------------------------

_ASCII_BYTES = bytes(range(128))
_B64_LINE = re.compile(rb".{1,76}", re.DOTALL)
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_MESSAGE_ID = re.compile(r"<[!-=?-~]+@[!-=?-~]+>")  # printable ASCII, no '>' inside


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


def _check_address(address: str) -> str:
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
    if not _DOMAIN.fullmatch(domain):
        raise InvalidAddress(f"not a usable email address: {address!r}")
    return f"{local}@{domain}"


def _check_message_id(message_id: str) -> str:
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"not a Message-ID: {message_id!r}")
    return message_id


@lru_cache(maxsize=4096)
def _text_field(name: str, value: str) -> str:
    """An unstructured header value (Subject), folded; RFC 2047 when not plain ASCII.

    ASCII that looks like an encoded word (``=?``) is encoded too, so that it reads back as
    written. Cached: most recipients of a step share their subject.
    """
    if value.isascii() and "=?" not in value:
        return Header(value, header_name=name, maxlinelen=_MAX_LINE).encode(linesep="\r\n")
    # 76: a continuation line is a space and one encoded word, which may not pass 75.
    return Header(value, "utf-8", header_name=name, maxlinelen=76).encode(linesep="\r\n")


def _address_field(name: str, display: str | None, address: str) -> str:
    """``Display Name <address>`` with the name quoted or RFC 2047 encoded as needed.

    A name longer than one encoded word (about 15 Japanese characters) is split over several,
    as RFC 2047 requires. Python before 3.14 decodes such an address with a stray space
    where the words meet (CPython gh-128110); mail clients do not.
    """
    display = _one_line(display) if display else ""
    if not display:
        return address
    if display.isascii() and "=?" not in display:
        return formataddr((display, address))
    words = _text_field(name, display)
    last_line = f"{name}: {words}".rsplit("\n", 1)[-1]
    fold = " " if len(last_line) + len(address) + 3 <= _MAX_LINE else "\r\n "
    return f"{words}{fold}<{address}>"
