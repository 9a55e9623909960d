"""Who an email is from, per brand and locale: ``templates/sender.yaml``.

Each top-level key is a brand; ``default`` is required and is the brand of a journey that
names none (a journey picks another with ``brand: KEY``). A brand says who sends (the
organisation's ``name``, the ``from`` mailbox), where replies go (``reply_to``: an address, or
``owner`` for the account owner's address, falling back to ``reply_to_fallback``), the
``postal_address``, an ``inquiry`` contact (email, phone, URL), the ``refusal`` statement (how
to stop the mail) and further ``legal`` lines, the ``list_id`` domain (List-Id) and the
``sender_id`` of Feedback-ID. ``locales: {en: {...}}`` overrides any of them for one language:
a Japanese footer and an English one name the same company in their own words.

These are what Japan's Act on Specified Electronic Mail (特定電子メール法) asks every
marketing email to show: the sender's name, postal address, a statement that the recipient
may refuse further mail with the means to do it, and a contact for inquiries. The templates
print them from ``sender.*`` (:meth:`Identity.context`); ``campaigns validate`` checks that
the rendered Japanese footers do (:mod:`campaigns.content.footer`). ``MAIL_FROM`` stays the
sender where the file says nothing.

The file is read like the journeys (:mod:`campaigns.journeys.yamlsource`): every problem is
``file:line:col: message`` with a hint, and anchors and aliases are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from campaigns.content.mime import DOMAIN, InvalidAddress, Sender, check_address
from campaigns.exceptions import CampaignsError, JourneyError, Problem
from campaigns.journeys.hints import suggest
from campaigns.journeys.yamlsource import Map, Pos, Seq, YamlProblem, describe, load, read

SENDER_FILE = "sender.yaml"
"""The file in the templates folder, beside ``links.yaml``."""

DEFAULT_BRAND = "default"
OWNER = "owner"
"""``reply_to: owner``: replies go to the account owner (``accounts.owner_email``)."""

BRAND_KEYS = (
    "name",
    "product",
    "from",
    "reply_to",
    "reply_to_fallback",
    "postal_address",
    "inquiry",
    "refusal",
    "legal",
    "list_id",
    "list_name",
    "sender_id",
    "unsubscribe_domain",
)
LOCALE_KEYS = BRAND_KEYS
INQUIRY_KEYS = ("email", "phone", "url", "hours")
_BRAND_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_LOCALE_RE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_SENDER_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TEXT = 300


@dataclass(frozen=True)
class Inquiry:
    """Where a recipient can ask about the mail: any of an address, a phone number, a page."""

    email: str | None = None
    phone: str | None = None
    url: str | None = None
    hours: str | None = None

    def __bool__(self) -> bool:
        return bool(self.email or self.phone or self.url)


@dataclass(frozen=True)
class Identity:
    """One brand in one locale, every field resolved (the locale's over the brand's)."""

    brand: str
    name: str | None = None
    product: str | None = None
    from_name: str | None = None
    from_address: str | None = None
    reply_to: str | None = None  # an address, OWNER, or None
    reply_to_fallback: str | None = None
    postal_address: str | None = None
    inquiry: Inquiry = Inquiry()
    refusal: str | None = None
    legal: tuple[str, ...] = ()
    list_id: str | None = None
    list_name: str | None = None
    sender_id: str | None = None
    unsubscribe_domain: str | None = None

    def sender(self, fallback: Sender, owner_email: str | None = None) -> Sender:
        """The From and Reply-To of a message: this identity's, ``fallback`` (``MAIL_FROM``)
        where it says nothing. ``reply_to: owner`` takes ``owner_email`` when there is one,
        else the brand's ``reply_to_fallback``, else no Reply-To."""
        reply_to: str | None
        if self.reply_to == OWNER:
            reply_to = _usable(owner_email) or self.reply_to_fallback
        else:
            reply_to = self.reply_to
        address = self.from_address or fallback.address
        name = self.from_name if self.from_name is not None else fallback.name
        return Sender(address=address, name=name, reply_to=reply_to or fallback.reply_to)

    def domain(self, fallback: Sender) -> str:
        """The domain of the From address (of List-Id and the unsubscribe mailbox by default)."""
        return (self.from_address or fallback.address).rsplit("@", 1)[-1]

    def context(self) -> dict[str, object]:
        """``sender`` in the templates' context (docs/templates.md)."""
        return {
            "brand": self.brand,
            "name": self.name or "",
            "product": self.product or self.name or "",
            "from_name": self.from_name or "",
            "from_address": self.from_address or "",
            "postal_address": self.postal_address or "",
            "inquiry": {
                "email": self.inquiry.email or "",
                "phone": self.inquiry.phone or "",
                "url": self.inquiry.url or "",
                "hours": self.inquiry.hours or "",
            },
            "refusal": self.refusal or "",
            "legal": list(self.legal),
        }


def _usable(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return check_address(address)
    except InvalidAddress:
        return None


@dataclass(frozen=True)
class SenderSet:
    """Every brand of ``sender.yaml``, each with its per-locale overrides."""

    brands: Mapping[str, Identity] = field(default_factory=dict)
    locales: Mapping[str, Mapping[str, Identity]] = field(default_factory=dict)
    path: str = SENDER_FILE

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.brands)

    def identity(self, brand: str | None, locale: str) -> Identity:
        """``brand`` (None: the default) in ``locale`` (its language, then the brand's own)."""
        key = brand or DEFAULT_BRAND
        found = self.brands.get(key) or self.brands.get(DEFAULT_BRAND)
        if found is None:
            return Identity(brand=key)
        by_locale = self.locales.get(found.brand, {})
        language = locale.replace("_", "-").split("-", 1)[0].lower()
        return by_locale.get(locale) or by_locale.get(language) or found


EMPTY = SenderSet(MappingProxyType({}), MappingProxyType({}))
"""No ``sender.yaml``: every message is from ``MAIL_FROM``, with no ``sender.*`` values."""


def load_senders(path: Path) -> SenderSet:
    """Read ``templates/sender.yaml`` (:data:`EMPTY` when there is none); raises
    :class:`JourneyError` with every problem, :class:`CampaignsError` when it cannot be read."""
    if not path.exists():
        return EMPTY
    try:
        text = read(path)
    except YamlProblem as exc:
        problem = Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)
        raise JourneyError([problem]) from None
    except UnicodeDecodeError as exc:
        raise JourneyError(
            [Problem(str(path), 1, 1, f"not UTF-8 text (byte {exc.start})", "save it as UTF-8")]
        ) from None
    except OSError as exc:
        raise CampaignsError(f"{path}: cannot read the sender identity: {exc}") from None
    return parse_senders(text, str(path))


def parse_senders(text: str, path: str = SENDER_FILE) -> SenderSet:
    """The brands in ``text``; raises :class:`JourneyError` listing every problem."""
    reader = _Reader(path)
    try:
        doc = load(text)
    except YamlProblem as exc:
        raise JourneyError(
            [Problem(path, exc.pos.line, exc.pos.col, exc.message, exc.hint)]
        ) from None
    except RecursionError:
        raise JourneyError([Problem(path, 1, 1, "the file is nested too deeply")]) from None
    brands: dict[str, Identity] = {}
    locales: dict[str, dict[str, Identity]] = {}
    if not isinstance(doc, Map):
        reader.report(
            getattr(doc, "pos", Pos(1, 1)),
            "sender.yaml is a mapping of brands",
            "start with 'default:' and indent its name, from, postal_address, inquiry...",
        )
    else:
        if DEFAULT_BRAND not in doc:
            reader.report(
                doc.pos,
                "there is no 'default' brand",
                "name one brand 'default': journeys without a 'brand:' key send as it",
            )
        for key, value in doc.items():
            if not _BRAND_RE.fullmatch(key):
                reader.report(
                    doc.key_at(key),
                    f"bad brand key {key!r}",
                    "lower-case letters, digits, '-' and '_', starting with a letter",
                )
                continue
            brand = reader.identity(Identity(brand=key), value, doc.at(key), f"brand '{key}'")
            if brand is None:
                continue
            brands[key] = brand
            locales[key] = {}
            overrides = value.get("locales") if isinstance(value, Map) else None
            if overrides is None:
                continue
            if not isinstance(overrides, Map):
                reader.report(
                    value.at("locales"),
                    f"'locales' must be a mapping, not {describe(overrides)}",
                    "e.g. locales: {en: {name: Example Inc.}}",
                )
                continue
            for locale, override in overrides.items():
                if not _LOCALE_RE.fullmatch(locale):
                    reader.report(
                        overrides.key_at(locale),
                        f"bad locale {locale!r}",
                        "a language code such as en or ja",
                    )
                    continue
                found = reader.identity(
                    brand, override, overrides.at(locale), f"locale '{locale}'", nested=True
                )
                if found is not None:
                    locales[key][locale] = found
    if reader.problems:
        problems = sorted(set(reader.problems), key=lambda p: (p.line, p.col, p.message))
        raise JourneyError(problems)
    return SenderSet(
        MappingProxyType(brands),
        MappingProxyType({k: MappingProxyType(v) for k, v in locales.items()}),
        path,
    )


class _Reader:
    """One file's check: the problems found so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def report(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.path, pos.line, pos.col, message, hint))

    def identity(
        self, base: Identity, value: object, pos: Pos, what: str, *, nested: bool = False
    ) -> Identity | None:
        """``base`` with the fields of ``value`` (a brand's or a locale's mapping)."""
        if not isinstance(value, Map):
            self.report(
                pos,
                f"{what} must be a mapping, not {describe(value)}",
                "indent its keys under it: name, from, postal_address, inquiry...",
            )
            return None
        allowed = LOCALE_KEYS if nested else (*BRAND_KEYS, "locales")
        for key in value:
            if key not in allowed:
                self.report(
                    value.key_at(key),
                    f"unknown key '{key}' in {what}",
                    suggest(key, allowed) or f"keys: {', '.join(allowed)}",
                )
        changes: dict[str, object] = {}
        for key in ("name", "product", "postal_address", "refusal", "list_name"):
            if key in value:
                changes[key] = self.line(value, key)
        if "from" in value:
            changes.update(self.mailbox(value))
        if "reply_to" in value:
            raw = value["reply_to"]
            changes["reply_to"] = OWNER if raw == OWNER else self.address(value, "reply_to")
        if "reply_to_fallback" in value:
            changes["reply_to_fallback"] = self.address(value, "reply_to_fallback")
        if "inquiry" in value:
            changes["inquiry"] = self.inquiry(value)
        if "legal" in value:
            changes["legal"] = self.lines(value, "legal")
        for key in ("list_id", "unsubscribe_domain"):
            if key in value:
                changes[key] = self.domain(value, key)
        if "sender_id" in value:
            raw = value["sender_id"]
            if not isinstance(raw, str) or not _SENDER_ID_RE.fullmatch(raw):
                self.report(
                    value.at("sender_id"),
                    f"bad sender_id {raw!r}",
                    "letters, digits, '.', '-' and '_' (no ':'), up to 64: the fourth field "
                    "of Feedback-ID",
                )
            else:
                changes["sender_id"] = raw
        return replace(base, **changes)  # type: ignore[arg-type]

    def line(self, doc: Map, key: str, *, limit: int = _MAX_TEXT) -> str | None:
        """A one-line text: no control characters (CR or LF would end a header early)."""
        raw = doc[key]
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            self.report(doc.at(key), f"'{key}' must be text, not {describe(raw)}")
            return None
        text = str(raw).strip()
        bad = _CONTROL.search(text)
        if bad:
            self.report(
                doc.at(key),
                f"'{key}' contains the control character {bad.group(0)!r}",
                "write it on one line, without a '|' or '>' block",
            )
            return None
        if not text:
            self.report(doc.at(key), f"'{key}' is empty", "write it out, or leave the key out")
            return None
        if len(text) > limit:
            self.report(doc.at(key), f"'{key}' is longer than {limit} characters")
            return None
        return text

    def address(self, doc: Map, key: str) -> str | None:
        text = self.line(doc, key)
        if text is None:
            return None
        try:
            return check_address(text)
        except InvalidAddress:
            self.report(
                doc.at(key), f"'{key}': not an email address: {text!r}", "e.g. cs@example.com"
            )
            return None

    def domain(self, doc: Map, key: str) -> str | None:
        text = self.line(doc, key)
        if text is None:
            return None
        try:
            ascii_name = text.encode("idna").decode("ascii") if not text.isascii() else text
        except UnicodeError:
            ascii_name = ""
        if not DOMAIN.fullmatch(ascii_name) or "." not in ascii_name:
            self.report(doc.at(key), f"'{key}': not a domain name: {text!r}", "e.g. example.com")
            return None
        return ascii_name.lower()

    def mailbox(self, doc: Map) -> dict[str, object]:
        raw = doc["from"]
        if isinstance(raw, str):
            address = self.address(doc, "from")
            return {"from_address": address} if address else {}
        if not isinstance(raw, Map):
            self.report(
                doc.at("from"),
                f"'from' must be an address or a mapping, not {describe(raw)}",
                "e.g. from: {name: Example カスタマーサクセス, address: cs@example.com}",
            )
            return {}
        for key in raw:
            if key not in ("name", "address"):
                self.report(
                    raw.key_at(key),
                    f"unknown key '{key}' in 'from'",
                    suggest(key, ("name", "address")) or "keys: name, address",
                )
        found: dict[str, object] = {}
        if "address" in raw:
            found["from_address"] = self.address(raw, "address")
        else:
            self.report(raw.pos, "'from' needs an 'address'", "e.g. address: cs@example.com")
        if "name" in raw:
            found["from_name"] = self.line(raw, "name", limit=120)
        return found

    def inquiry(self, doc: Map) -> Inquiry:
        raw = doc["inquiry"]
        if isinstance(raw, str):
            text = self.line(doc, "inquiry")
            if text and "@" in text and not text.startswith("http"):
                return Inquiry(email=self.address(doc, "inquiry"))
            if text and text.startswith(("https://", "http://")):
                return Inquiry(url=text)
            return Inquiry(phone=text)
        if not isinstance(raw, Map):
            self.report(
                doc.at("inquiry"),
                f"'inquiry' must be a mapping, not {describe(raw)}",
                "e.g. inquiry: {email: support@example.com, phone: 03-1234-5678}",
            )
            return Inquiry()
        for key in raw:
            if key not in INQUIRY_KEYS:
                self.report(
                    raw.key_at(key),
                    f"unknown key '{key}' in 'inquiry'",
                    suggest(key, INQUIRY_KEYS) or f"keys: {', '.join(INQUIRY_KEYS)}",
                )
        email = self.address(raw, "email") if "email" in raw else None
        phone = self.line(raw, "phone", limit=40) if "phone" in raw else None
        hours = self.line(raw, "hours", limit=120) if "hours" in raw else None
        url = self.line(raw, "url") if "url" in raw else None
        if url is not None and not url.startswith(("https://", "http://")):
            self.report(raw.at("url"), f"'url' is not a web address: {url!r}", "https://...")
            url = None
        found = Inquiry(email=email, phone=phone, url=url, hours=hours)
        if not found and not any(p.line >= raw.pos.line for p in self.problems):
            self.report(raw.pos, "'inquiry' names no email, phone or url")
        return found

    def lines(self, doc: Map, key: str) -> tuple[str, ...]:
        raw = doc[key]
        if isinstance(raw, str):
            text = self.line(doc, key)
            return (text,) if text else ()
        if not isinstance(raw, Seq):
            self.report(doc.at(key), f"'{key}' must be a list of lines, not {describe(raw)}")
            return ()
        found: list[str] = []
        for index, item in enumerate(raw):
            holder = Map({key: item})
            holder.pos, holder.key_pos, holder.value_pos = raw.pos, {}, {key: raw.at(index)}
            text = self.line(holder, key)
            if text:
                found.append(text)
        return tuple(found)
