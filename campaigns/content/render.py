"""One email per recipient: Jinja on the compiled template, tracked links, MIME bytes.

The template store compiles MJML once per template version; this module personalises it per
recipient and packs the result into a message ready for any transport, in three stages:

1. **Jinja** (here), in a sandbox, with autoescaping for the HTML part and without for the
   text part and the subject. Compiled Jinja templates are cached per template version (the
   compile costs far more than a render). Missing optional data renders empty
   (``{{ contact.role }}`` with no role, ``{% if invite.join_url %}`` in an email step), and
   on a dict a key wins over a method of the same name (``{{ account.values }}`` is the key).
2. **Links**: click URLs and the open pixel (:mod:`campaigns.content.links`).
3. **MIME**: the message bytes from a skeleton prepared once per sender
   (:mod:`campaigns.content.mime`), signed with DKIM when a key is configured
   (:mod:`campaigns.content.dkim`).

Who the message is from comes from ``templates/sender.yaml`` (:mod:`campaigns.content.sender`),
per brand and locale: the From and Reply-To (``reply_to: owner``: the account owner's address),
``sender.*`` in the templates' context (the legal footer), List-Id, Feedback-ID and the
``mailto:`` of List-Unsubscribe. ``MAIL_FROM`` is the sender where it says nothing.

Survey and invite steps add their own values to the context (answer URLs, the event's time
in the recipient's zone and words, from :mod:`campaigns.content.locale`). Dates, times,
numbers and money print through the filters of :mod:`campaigns.content.filters` in the
reader's words and zone: the context's reader (or its ``contact``), in the language of the
template actually used.

Nothing here touches the database, the network or the clock: ``now`` is passed in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from jinja2 import ChainableUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

from campaigns.content import filters, mime
from campaigns.content.dkim import Signer
from campaigns.content.links import track_links
from campaigns.content.locale import (
    CSAT_WORDS,
    NPS_ENDS,
    format_duration,
    format_starts_at,
    language,
)
from campaigns.content.mime import OutgoingEmail, Sender, check_address, make_message_id
from campaigns.content.sender import EMPTY, Identity, SenderSet
from campaigns.content.templates import CompiledTemplate, TemplateStore
from campaigns.tracking.tokens import Tokens

SCALES = {"nps": range(11), "csat": range(1, 6)}
"""The answer values of each survey scale, in the order the buttons appear."""

TEMPLATE_RECHECK_SECONDS = 5.0
"""How long a renderer trusts a compiled template before asking the store whether the files
changed. The store re-reads and re-hashes every file on each call (milliseconds), far too
slow per recipient; an edited template reaches new messages within this many seconds."""

JINJA_CACHE_SIZE = 256
"""Compiled Jinja templates kept per renderer (per template version, and per subject line)."""

ORIGIN_CACHE_SIZE = 4096
"""Senders whose header skeleton a renderer keeps: one per brand, locale and Reply-To (with
``reply_to: owner``, one per account owner)."""


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
class Personalised:
    """The two bodies and the subject for one recipient, before link tracking."""

    subject: str
    html: str
    text: str
    unsubscribe_url: str
    unsubscribe_mailto: str | None = None
    identity: Identity | None = None


@dataclass(frozen=True)
class Origin:
    """Where a customer email comes from: the journey's ``brand`` (None: ``default``), the
    account owner's address (for ``reply_to: owner``) and the journey and step, which
    Feedback-ID names."""

    brand: str | None = None
    owner_email: str | None = None
    journey: str | None = None
    step: str | None = None


# -- Jinja -------------------------------------------------------------------------------


class _Environment(SandboxedEnvironment):
    """The sandbox, reading ``a.b`` on a dict as a record: the key ``b`` if there is one
    (even where a dict method has that name), else None, as if the field were empty. So
    ``{% if account.days_to_renewal is not none and account.days_to_renewal <= 30 %}`` holds
    up when the caller has no such field. Dict methods (``.get``) still work."""

    def getattr(self, obj: Any, attribute: str) -> Any:  # Jinja's own signature
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                if not hasattr(type(obj), attribute):
                    return None
        return super().getattr(obj, attribute)


def _finalize(value: object) -> object:
    """``{{ contact.role }}`` prints nothing, not "None", when there is no role."""
    return "" if value is None else value


def _environment(*, autoescape: bool) -> _Environment:
    env = _Environment(
        autoescape=autoescape, undefined=ChainableUndefined, finalize=_finalize, cache_size=0
    )
    filters.install(env)
    return env


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A small thread-safe cache of compiled templates."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._items[key] = value  # most recently used last
            return value

    def put(self, key: K, value: V) -> None:
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
        senders: SenderSet = EMPTY,
        signer: Signer | None = None,
    ) -> None:
        if not mime.DOMAIN.fullmatch(domain):
            raise ValueError(f"{domain!r} is not a domain name for Message-IDs")
        self.store = store
        self.tokens = tokens
        self.sender = sender
        self.domain = domain
        self.recheck_seconds = recheck_seconds
        self._html_env = _environment(autoescape=True)
        self._text_env = _environment(autoescape=False)
        self._bodies: _LRU[str, tuple[Template, Template]] = _LRU(JINJA_CACHE_SIZE)
        self._lines: _LRU[str, Template] = _LRU(JINJA_CACHE_SIZE * 4)
        self._compiled: dict[tuple[str, str], tuple[float, CompiledTemplate]] = {}
        self._track_prefix = f"{tokens.base_url}/t/"
        self.senders = senders
        self.signer = signer
        # The skeleton: header lines that are the same for every message from a sender, kept
        # per sender (brand, locale and Reply-To): building them costs more than the rest of
        # the headers together.
        self._mail_from, self._origin_headers = mime.origin_headers(sender)
        self._origins: dict[Sender, tuple[str, str]] = {
            sender: (self._mail_from, self._origin_headers)
        }
        self._contexts: dict[Identity, dict[str, object]] = {}
        self._list_ids: dict[Identity, str] = {}

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
        context: Mapping[str, object],
        survey: SurveySpec | None = None,
        invite: InviteSpec | None = None,
        now: datetime,
        origin: Origin | None = None,
    ) -> OutgoingEmail:
        """The email for one recipient of one step; ``message`` is the Message row id.

        ``subject`` and ``preheader`` are Jinja strings in the recipient's locale, rendered
        with the same context as the bodies. Pass the stored ``message_id`` on a retry.
        ``origin`` names the brand, the account owner and the journey and step.
        """
        to = check_address(to)
        origin = origin or Origin()
        parts = self.personalise(
            message=message,
            template=template,
            locale=locale,
            subject=subject,
            preheader=preheader,
            context=context,
            survey=survey,
            invite=invite,
            brand=origin.brand,
        )
        identity = parts.identity or self.senders.identity(origin.brand, locale)
        mail_from, origin_headers = self.origin(identity.sender(self.sender, origin.owner_email))
        html, text, links = track_links(
            parts.html, parts.text, self.tokens, message, skip=self._track_prefix
        )
        message_id = mime.check_message_id(message_id) if message_id else None
        message_id = message_id or make_message_id(message, self.domain)
        feedback = None
        if origin.journey and origin.step:
            feedback = mime.feedback_id(
                origin.journey,
                origin.step,
                identity.brand,
                identity.sender_id or identity.domain(self.sender),
            )
        raw = mime.assemble(
            origin_headers,
            message=message,
            message_id=message_id,
            to=to,
            to_name=to_name,
            subject=parts.subject,
            html=html,
            text=text,
            unsubscribe_url=parts.unsubscribe_url,
            unsubscribe_mailto=parts.unsubscribe_mailto,
            list_id=self._list_id(identity),
            feedback_id=feedback,
            now=now,
        )
        if self.signer is not None:
            raw = self.signer.sign(raw)
        return OutgoingEmail(
            message_id=message_id,
            to=to,
            mail_from=mail_from,
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
        context: Mapping[str, object],
        survey: SurveySpec | None = None,
        invite: InviteSpec | None = None,
        brand: str | None = None,
    ) -> Personalised:
        """Stage 1: the subject and both bodies rendered for one recipient (Jinja).

        Dates and numbers follow the context's reader (:func:`filters.reader_of`), in the
        language of the template the store chose (a ``de`` contact reading the ``en``
        template reads English dates in their own time zone)."""
        compiled = self.compiled(template, locale)
        html_template, text_template = self._templates(compiled)
        values = dict(context)
        reader = filters.reader_of(values).reading(compiled.locale)
        values[filters.READER] = reader
        unsubscribe_url = self.tokens.unsubscribe_url(message)
        values["unsubscribe_url"] = unsubscribe_url
        identity = self.senders.identity(brand, compiled.locale)
        mailto = self.tokens.unsubscribe_mailto(
            message, identity.unsubscribe_domain or identity.domain(self.sender)
        )
        values["unsubscribe_mailto"] = mailto
        values["sender"] = {
            **self._sender_context(identity),
            "unsubscribe_mailto": mailto,
            "unsubscribe_address": mailto[len("mailto:") :].split("?", 1)[0],
        }
        values["preferences_url"] = self.tokens.preferences_url(message)
        if survey is not None:
            values["survey"] = survey_context(survey, self.tokens, message, compiled.locale)
        if invite is not None:
            values["invite"] = invite_context(invite, self.tokens, message, reader.locale)
        # Subject and preheader may use everything above, e.g. {{ invite.event_name }}.
        values["subject"] = rendered_subject = self._line(subject, values)
        values["preheader"] = self._line(preheader, values) if preheader else ""
        return Personalised(
            subject=rendered_subject,
            html=html_template.render(values),
            text=text_template.render(values),
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=mailto,
            identity=identity,
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
        """Stage 3: the message bytes (stage 2 is :func:`track_links`); see
        :func:`campaigns.content.mime.assemble` for mail without ``unsubscribe_url``."""
        return mime.assemble(
            self._origin_headers,
            message=message,
            message_id=message_id,
            to=to,
            to_name=to_name,
            subject=subject,
            html=html,
            text=text,
            unsubscribe_url=unsubscribe_url,
            now=now,
            headers=headers,
        )

    # -- caches ------------------------------------------------------------------

    def origin(self, sender: Sender) -> tuple[str, str]:
        """The checked envelope sender and the From/Reply-To lines of ``sender``, prepared
        once per sender (:func:`mime.origin_headers`)."""
        found = self._origins.get(sender)
        if found is None:
            found = mime.origin_headers(sender)
            if len(self._origins) >= ORIGIN_CACHE_SIZE:
                self._origins.pop(next(iter(self._origins)))
            self._origins[sender] = found
        return found

    def _sender_context(self, identity: Identity) -> dict[str, object]:
        found = self._contexts.get(identity)
        if found is None:
            found = self._contexts[identity] = identity.context()
        return found

    def _list_id(self, identity: Identity) -> str:
        """List-Id (RFC 2919): the brand's name and its ``list_id`` (default: the brand's key
        under the From domain)."""
        found = self._list_ids.get(identity)
        if found is None:
            domain = identity.list_id or f"{identity.brand}.{identity.domain(self.sender)}"
            name = identity.list_name or identity.product or identity.name or identity.brand
            found = self._list_ids[identity] = mime.list_id_field(name, domain)
        return found

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
        pair = self._bodies.get(compiled.hash)
        if pair is None:
            pair = (
                self._html_env.from_string(compiled.html),
                self._text_env.from_string(compiled.text),
            )
            self._bodies.put(compiled.hash, pair)
        return pair

    def _line(self, source: str, values: Mapping[str, object]) -> str:
        """A one-line Jinja string (subject, preheader), rendered without escaping."""
        if "{" not in source:
            return mime.one_line(source)
        compiled = self._lines.get(source)
        if compiled is None:
            compiled = self._text_env.from_string(source)
            self._lines.put(source, compiled)
        return mime.one_line(compiled.render(values))


# -- survey and invite context ---------------------------------------------------------


def survey_context(
    survey: SurveySpec, tokens: Tokens, message: int, locale: str
) -> dict[str, object]:
    """``survey`` for the templates: one option per score, each with its signed answer URL.

    ``label`` is the number itself (the shipped templates show it on a small button);
    ``description`` says what it means in the locale's words where the scale names it
    (every CSAT score, the two ends of NPS), else ``""``.
    """
    if survey.scale not in SCALES:
        raise ValueError(f"unknown survey scale {survey.scale!r}; use 'nps' or 'csat'")
    words = language(locale)
    options = []
    for value in SCALES[survey.scale]:
        if survey.scale == "csat":
            description = CSAT_WORDS.get(words, CSAT_WORDS["en"])[value - 1]
        else:
            ends = NPS_ENDS.get(words, NPS_ENDS["en"])
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


def invite_context(
    invite: InviteSpec, tokens: Tokens, message: int, locale: str
) -> dict[str, object]:
    """``invite`` for the templates: times in the recipient's zone and words, RSVP URLs.

    ``starts_at`` is the start as the ``datetime`` filter prints it; ``starts`` is the
    moment itself, for other formats (``{{ invite.starts | datetime("time") }}``)."""
    return {
        "event_name": invite.event_name,
        "starts_at": format_starts_at(invite.starts_at, invite.time_zone, locale),
        "starts": invite.starts_at,
        "duration": format_duration(invite.duration, locale),
        "join_url": invite.url or "",
        "rsvp_yes_url": tokens.answer_url(message, "yes"),
        "rsvp_no_url": tokens.answer_url(message, "no"),
    }
