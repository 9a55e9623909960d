"""The legal footer check: what ``campaigns validate`` asks of every Japanese marketing email.

Japan's Act on Specified Electronic Mail (特定電子メール法, art. 4, and its ordinance) asks each
marketing email to show four things: the sender's name, the sender's postal address, a
statement that the recipient may refuse further mail together with the means to do it (here:
the unsubscribe link and the unsubscribe address), and a contact for inquiries. The check
renders the template, both parts, with the brand's identity (``templates/sender.yaml``) and a
sample recipient, reads the HTML as text, and names each item a part lacks, with what to set
or write to mend it.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass

from campaigns.content.render import Renderer
from campaigns.content.sender import Identity

SAMPLE_CONTEXT: dict[str, object] = {
    "contact": {
        "name": "山田 太郎",
        "first_name": "太郎",
        "email": "taro@example.co.jp",
        "role": "admin",
        "locale": "ja",
        "time_zone": "Asia/Tokyo",
    },
    "account": {"name": "株式会社サンプル", "external_id": "sample", "plan": "enterprise"},
    "owner": {"name": "佐藤 花子", "email": "hanako@example.com"},
    "links": {},
}
"""A recipient to render the templates with (only the footer is read)."""

LAW = "特定電子メール法 requires it in every marketing email"

_TAG = re.compile(r"<[^>]+>")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_STYLE = re.compile(r"<(style|head)\b.*?</\1>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Lack:
    """One item a rendered part lacks: which part (``mjml`` or ``txt``), what, and the fix."""

    part: str
    message: str
    hint: str


def html_text(html: str) -> str:
    """The words a reader sees in ``html``, whitespace collapsed."""
    return " ".join(htmllib.unescape(_TAG.sub(" ", _STYLE.sub(" ", html))).split())


def lacks(renderer: Renderer, template: str, locale: str, brand: str | None) -> list[Lack]:
    """Every legal item the rendered ``template`` lacks, per part."""
    parts = renderer.personalise(
        message=1,
        template=template,
        locale=locale,
        subject="-",
        preheader=None,
        context=SAMPLE_CONTEXT,
        brand=brand,
    )
    identity = parts.identity or renderer.senders.identity(brand, locale)
    hrefs = {htmllib.unescape(a or b) for a, b in _HREF.findall(parts.html)}
    mailto = parts.unsubscribe_mailto or ""
    address = mailto[len("mailto:") :].split("?", 1)[0]
    found: list[Lack] = []
    for part, text, links in (
        ("mjml", html_text(parts.html), hrefs),
        ("txt", " ".join(parts.text.split()), None),
    ):
        found.extend(_lacks(part, text, links, identity, parts.unsubscribe_url, mailto, address))
    return found


def _lacks(
    part: str,
    text: str,
    links: set[str] | None,
    identity: Identity,
    unsubscribe_url: str,
    mailto: str,
    address: str,
) -> list[Lack]:
    found: list[Lack] = []

    def need(value: str | None, item: str, setting: str, variable: str) -> None:
        if not value:
            found.append(
                Lack(part, f"the footer lacks {item} ({LAW})", f"set {setting} in sender.yaml")
            )
        elif " ".join(value.split()) not in text:
            found.append(
                Lack(
                    part,
                    f"the footer lacks {item} ({LAW})",
                    f"print {{{{ {variable} }}}} in the footer",
                )
            )

    need(identity.name, "the sender's name", "name", "sender.name")
    need(
        identity.postal_address,
        "the sender's postal address",
        "postal_address",
        "sender.postal_address",
    )
    need(
        identity.refusal,
        "the statement that the recipient may refuse further mail",
        "refusal",
        "sender.refusal",
    )
    means_ok = (
        (unsubscribe_url in links and mailto in links)
        if links is not None
        else (unsubscribe_url in text and address in text)
    )
    if not means_ok:
        found.append(
            Lack(
                part,
                f"the footer lacks the means to refuse further mail, the unsubscribe link and "
                f"address ({LAW})",
                "link {{ unsubscribe_url }} and {{ sender.unsubscribe_mailto }} in the footer"
                if links is not None
                else "print {{ unsubscribe_url }} and {{ sender.unsubscribe_address }} in the "
                "footer",
            )
        )
    inquiry = identity.inquiry
    contacts = [c for c in (inquiry.email, inquiry.phone, inquiry.url) if c]
    if not contacts:
        found.append(
            Lack(
                part,
                f"the footer lacks an inquiry contact ({LAW})",
                "set inquiry (email, phone or url) in sender.yaml",
            )
        )
    elif not any(c in text for c in contacts):
        found.append(
            Lack(
                part,
                f"the footer lacks an inquiry contact ({LAW})",
                "print {{ sender.inquiry.email }} (or .phone, .url) in the footer",
            )
        )
    return found
