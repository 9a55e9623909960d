"""Tracked links: every ``http(s)`` link of a message becomes a signed click URL, plus a pixel.

Every ``http(s)`` ``href`` in the HTML is replaced by a signed click URL whose index points
into :attr:`~campaigns.content.mime.OutgoingEmail.links`, the de-duplicated original
destinations the engine stores on the Message row (the click endpoint redirects only to
those: no open redirect). Our own signed URLs (unsubscribe, preferences, answers) are left
alone: each is tracked by its own endpoint. The same destinations are rewritten in the text
part too, so a click from a text-only reader counts the same as one from the HTML; a URL only
the text part has stays as written. An open pixel goes just before ``</body>``, with a hidden
trap link (no text, ``display:none``, ``aria-hidden``): no person can click it, link
scanners follow it, and the classifier marks what clicked it as a machine.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping

from campaigns.tracking.tokens import TRAP_LINK, Tokens

_HREF = re.compile(r"""(<a\s[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_TRAILING = ".,;:!?)]'"
_PIXEL_ATTRS = 'width="1" height="1" alt="" style="display:none"'
_TRAP_STYLE = 'style="display:none;font-size:0;line-height:0" aria-hidden="true" tabindex="-1"'


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
    trap = f'<a href="{tokens.click_url(message, TRAP_LINK)}" {_TRAP_STYLE}></a>'
    pixel = f'{trap}<img src="{tokens.open_url(message)}" {_PIXEL_ATTRS} />'
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
