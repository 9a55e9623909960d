"""Who caused a tracking hit: a person, a machine, or nobody can tell.

Most opens and many clicks are not people. Apple Mail Privacy Protection (MPP) fetches every
image when the email arrives; Yahoo prefetches through its proxy; corporate link scanners
(Microsoft Defender Safe Links, Proofpoint, Mimecast, Barracuda...) request every link within
seconds of delivery, often with a browser's user agent and sometimes with HEAD; chat apps
expand links into previews. Rates, journey branches (``opened``, ``clicked``) and tuning use
human hits only, so every hit gets a :class:`Verdict`: a
:class:`~campaigns.store.enums.Classification` and a short reason kept beside the raw hit (at
most :data:`MAX_REASON` characters).

:func:`classify_one` judges a request alone, first rule that applies:

1. ``trap`` (the hidden link no person can see or click) → machine.
2. Any method but GET and POST (HEAD above all) → machine: people's browsers GET links and
   images; scanners check links with HEAD.
3. An empty user agent → machine.
4. A user agent naming a scanner, bot, crawler, link-preview fetcher or HTTP library
   (:data:`SCANNERS`, case-insensitive) → machine, naming it.
5. A POSTed ``answer`` → human: a person pressed a button on the confirm page (a scanner GETs
   links, it does not submit forms). A POSTed ``unsubscribe`` → human whatever its user agent
   (checked before rules 3 and 4): it is the confirm page's button, or the RFC 8058 one-click
   POST a mail provider's server sends when the person presses "Unsubscribe"; counting those
   as machine would hide most unsubscribes.
6. ``YahooMailProxy`` → machine (Yahoo prefetches images on delivery).
7. An open with the user agent ``Mozilla/5.0`` and nothing else (what MPP's fetcher sends), or
   from Apple's network (:data:`APPLE_NETWORKS`) → machine: MPP prefetch.
8. Within :data:`FAST_CLICK` of sending, a click (or a GET on an answer or unsubscribe link)
   → machine: faster than a person. Within :data:`FAST_OPEN`, an open → unknown. Hits
   stamped before ``sent_at`` (clock skew) count as 0 s; without ``sent_at`` this rule is skipped.
9. ``GoogleImageProxy`` → human for an open (Gmail fetches images when the email is opened,
   not on delivery), machine for anything else (an image proxy does not follow links).
10. A browser (``Mozilla/`` with a platform in parentheses, but not a ``compatible;`` agent
    other than Internet Explorer) or a mail client (Outlook, Thunderbird, Microsoft Office...)
    → human; anything else → unknown.

:func:`classify_hits` judges all the hits of one message together, on top of that:

- Scanner burst: link hits (clicks, the trap, GETs on answer/unsubscribe links) are chained
  while each is within :data:`BURST_WINDOW` of the previous one; a chain touching
  :data:`BURST_LINKS` or more *distinct* links is a scanner going through the message, and all
  its hits are machine. The same link clicked twice (a double click) is not a burst. Opens
  within :data:`BURST_WINDOW` of a burst are machine too (the scanner rendered the email).
- Trap: every open and link hit within :data:`TRAP_WINDOW` of a trap hit is machine.
- Only ever towards machine: a verdict from the request alone is kept unless one of these two
  rules makes it machine, and adding hits only grows chains and adds traps, so a machine
  verdict never turns back into human as more hits arrive (the flusher reclassifies the
  earlier hits of a message with the new ones). POSTed answers and unsubscribes are left alone.

It is all O(n log n) in the hits of a message (one sort, then bisection), with user agents and
IP addresses judged once each (cached) and the patterns compiled at import.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from campaigns.store.enums import Classification

HUMAN, MACHINE, UNKNOWN = Classification.HUMAN, Classification.MACHINE, Classification.UNKNOWN

KINDS = ("open", "click", "trap", "answer", "unsubscribe")
"""The kinds of hit: the open pixel, a tracked link, the hidden trap link, and the POSTs of the
answer and unsubscribe pages."""

BURST_WINDOW = timedelta(seconds=2)
"""Link hits at most this far apart chain into one run; opens this close to a burst join it."""

BURST_LINKS = 2
"""Distinct links in one chain that make it a scanner burst: a person clicks one link, reads
the page, and comes back later for another; a scanner requests them back to back."""

FAST_CLICK = timedelta(seconds=5)
"""A click this soon after sending is a machine: the email has barely reached the mailbox."""

FAST_OPEN = timedelta(seconds=2)
"""An open this soon after sending is unknown: too soon for a person, but not proof."""

TRAP_WINDOW = timedelta(seconds=10)
"""Opens and clicks this close to a hit on the hidden trap link came with it (one scan)."""

MAX_REASON = 255
"""Longest reason: the column it is kept in with the raw hit."""

MAX_AGENT = 1_024
"""User agents are judged on their first this many characters (real ones are far shorter)."""

APPLE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"), ipaddress.ip_network("2620:149::/32"))
"""Apple's own networks (IPv4 and IPv6), where MPP's fetchers run."""

SCANNERS: tuple[tuple[str, str], ...] = (
    # Mail security gateways and link scanners. Most send a browser's user agent, which is why
    # the burst and trap rules exist; these catch the ones that say who they are.
    ("Microsoft Defender Safe Links", r"safe ?links|urlanalyzer"),
    ("Microsoft BingPreview (Outlook.com link check)", r"bingpreview"),
    # Office apps probe a link before handing it to the browser; the browser's GET is the person.
    ("Microsoft Office link check", r"microsoft office (?:existence|protocol) discovery"),
    ("Proofpoint URL Defense", r"proofpoint|urldefense"),
    ("Mimecast", r"mimecast"),
    ("Barracuda", r"barracuda"),
    ("Cisco/IronPort", r"ironport|cisco"),
    ("Symantec", r"symantec|messagelabs|bluecoat"),
    ("Trend Micro", r"trend ?micro"),
    ("Forcepoint", r"forcepoint|websense"),
    ("Zscaler", r"zscaler"),
    ("Sophos", r"sophos"),
    ("Fortinet", r"fortinet|fortiguard|fortimail"),
    ("Check Point", r"check ?point|avanan"),
    ("Palo Alto Networks", r"palo ?alto"),
    ("McAfee/Trellix", r"mcafee|trellix|fireeye"),
    ("Kaspersky", r"kaspersky"),
    ("Bitdefender", r"bitdefender"),
    ("Hornetsecurity", r"hornetsecurity"),
    ("Vade Secure", r"vade ?secure"),
    ("Cofense", r"cofense"),
    ("Darktrace", r"darktrace"),
    ("VirusTotal", r"virustotal"),
    ("urlscan.io", r"urlscan"),
    # Link previews in chat and social apps.
    ("Slack link preview", r"slackbot|slack-imgproxy"),
    ("Teams/Skype link preview", r"skypeuripreview"),
    ("LinkedIn link preview", r"linkedinbot"),
    ("Facebook link preview", r"facebookexternalhit|facebot|meta-externalagent"),
    ("X/Twitter link preview", r"twitterbot"),
    ("WhatsApp link preview", r"^whatsapp/"),
    ("Discord link preview", r"discordbot"),
    ("Telegram link preview", r"telegrambot"),
    ("link preview", r"(?:url|link|web)[ -]?preview|iframely|embedly"),
    # Headless browsers and HTTP libraries: programs, not people.
    ("headless Chrome", r"headlesschrome"),
    ("PhantomJS", r"phantomjs"),
    ("Puppeteer/Playwright/Selenium", r"puppeteer|playwright|selenium"),
    ("python-requests", r"python-requests"),
    ("Python HTTP library", r"python-urllib|python-httpx|aiohttp|httpx/|scrapy"),
    ("curl", r"curl/|libcurl"),
    ("Wget", r"wget"),
    ("Go HTTP client", r"go-http-client"),
    ("Java HTTP client", r"java/|apache-httpclient|okhttp"),
    ("Node.js HTTP client", r"node-fetch|axios/|undici"),
    ("Perl/Ruby/PHP HTTP library", r"libwww-perl|lwp::|ruby|guzzlehttp"),
    ("API client", r"postman|insomnia"),
    # Generic words, last so a named entry above wins at the same place. "bot" must end a word
    # and not be the phone maker Cubot; the word itself goes into the reason.
    ("bot", r"[a-z0-9_.-]{0,40}?(?<!cu)bot(?![a-z])"),
    ("crawler", r"[a-z0-9_.-]{0,40}?(?:crawler|spider|slurp|ia_archiver)"),
    ("scanner", r"[a-z0-9_.-]{0,40}?scanner"),
)
"""Named user-agent patterns of machines (case-insensitive; the leftmost match wins)."""

_GENERIC = frozenset({"bot", "crawler", "scanner"})
_SCANNER = re.compile(
    "|".join(f"(?P<s{i}>{pattern})" for i, (_, pattern) in enumerate(SCANNERS)), re.IGNORECASE
)
_MAIL_CLIENT = re.compile(
    r"outlook|thunderbird|microsoft office|ms-office|windows[ -]live[ -]mail|postbox"
    r"|em ?client|mailbird|airmail|mailspring|evolution/|kmail",
    re.IGNORECASE,
)
_BROWSER = re.compile(r"mozilla/\d[\d.]*\s*\(([^)]+)\)", re.IGNORECASE)
_OLD_IE = re.compile(r"msie|trident", re.IGNORECASE)

# What a user agent says about its sender (the second item: the scanner's name, or "").
_EMPTY, _NAMED, _YAHOO, _GMAIL, _MPP, _CLIENT, _OTHER = (
    "empty",
    "named",
    "yahoo",
    "gmail",
    "mpp",
    "client",
    "other",
)


@dataclass(frozen=True, slots=True)
class HitView:
    """What the classifier needs to know about one hit."""

    kind: str  # "open", "click", "trap" (the hidden trap link), "answer", "unsubscribe"
    at: datetime  # aware UTC time the server received it
    method: str = "GET"  # "GET", "HEAD", "POST"
    user_agent: str = ""
    ip: str = ""  # IPv4 or IPv6 text, may be "" or garbage: never raises on it
    link: int | None = None  # for clicks: the index of the link in the message


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who caused a hit, and why we think so (short, for people reading the raw hits)."""

    classification: Classification
    reason: str


def classify_hits(hits: Sequence[HitView], *, sent_at: datetime | None) -> list[Verdict]:
    """Verdicts for all hits known so far on ONE message (any order in, one verdict per hit,
    same order as given).

    Called again when more hits arrive for the message, so a verdict may change from human to
    machine when a later hit reveals a scanner burst or a trap click; never back.
    """
    verdicts = [classify_one(hit, sent_at=sent_at) for hit in hits]
    times = [_aware(hit.at) for hit in hits]
    order = sorted(range(len(hits)), key=times.__getitem__)
    traps = [times[i] for i in order if hits[i].kind == "trap"]
    bursts = _bursts([i for i in order if _follows_link(hits[i])], hits, times)
    starts = [start for start, _, _ in bursts]
    for i, hit in enumerate(hits):
        if verdicts[i].classification == MACHINE or not (hit.kind == "open" or _follows_link(hit)):
            continue
        verb = "opened" if hit.kind == "open" else "clicked"
        apart = _nearest(traps, times[i])
        if apart is not None and apart <= TRAP_WINDOW:
            verdicts[i] = Verdict(
                MACHINE, f"{verb} with the hidden trap link ({_seconds(apart)} s apart)"
            )
            continue
        burst = _burst_at(bursts, starts, times[i], member=hit.kind != "open")
        if burst is not None:
            verdicts[i] = Verdict(
                MACHINE,
                burst if hit.kind != "open" else _clip(f"opened during a scanner burst ({burst})"),
            )
    return verdicts


def classify_one(hit: HitView, *, sent_at: datetime | None) -> Verdict:
    """The verdict from the request alone (method, user agent, IP, time since sending),
    without the other hits."""
    if hit.kind == "trap":
        return Verdict(MACHINE, "clicked the hidden trap link (no person can see it)")
    method = hit.method.strip().upper()
    if method == "HEAD":
        return Verdict(MACHINE, "HEAD request (link scanners check links this way)")
    if method not in ("GET", "POST"):
        return Verdict(
            MACHINE, _clip(f"{method[:16]!r} request (people's browsers send GET or POST)")
        )
    agent, name = _agent(hit.user_agent[:MAX_AGENT])
    if hit.kind == "unsubscribe" and method == "POST":
        if agent == _CLIENT:
            return Verdict(HUMAN, "unsubscribe confirmed in a browser")
        return Verdict(
            HUMAN, "one-click unsubscribe POST (RFC 8058): a mail provider acting for a person"
        )
    if agent == _EMPTY:
        return Verdict(MACHINE, "no user agent (browsers and mail clients always send one)")
    if agent == _NAMED:
        return Verdict(MACHINE, _clip(f"user agent of a machine: {name}"))
    if hit.kind == "answer" and method == "POST":
        return Verdict(HUMAN, "answer posted from the confirm page (a person pressed a button)")
    if agent == _YAHOO:
        return Verdict(MACHINE, "Yahoo Mail proxy (prefetches images on delivery)")
    if hit.kind == "open" and (agent == _MPP or _from_apple(hit.ip[:64])):
        return Verdict(MACHINE, "Apple Mail Privacy Protection prefetch")
    if sent_at is not None:
        after = max(_aware(hit.at) - _aware(sent_at), timedelta(0))
        if hit.kind == "open" and after <= FAST_OPEN:
            return Verdict(UNKNOWN, f"opened {_seconds(after)} s after sending (too soon to tell)")
        if hit.kind != "open" and after <= FAST_CLICK:
            return Verdict(
                MACHINE, f"clicked {_seconds(after)} s after sending: faster than a person"
            )
    if agent == _GMAIL:
        if hit.kind == "open":
            return Verdict(HUMAN, "Gmail image proxy (fetched when the email is opened)")
        return Verdict(MACHINE, "Gmail image proxy on a link (it fetches images, not links)")
    if agent == _CLIENT:
        return Verdict(HUMAN, "browser or mail client")
    return Verdict(UNKNOWN, "unrecognised user agent")


# ---------------------------------------------------------------------------- the request


@lru_cache(maxsize=4_096)
def _agent(user_agent: str) -> tuple[str, str]:
    """What ``user_agent`` says about who sent it: one of the ``_EMPTY``... kinds, and for a
    named machine its name (a generic word like "bot" names the word it matched)."""
    agent = user_agent.strip()
    if not agent:
        return _EMPTY, ""
    match = _SCANNER.search(agent)
    if match is not None and match.lastgroup is not None:
        name = SCANNERS[int(match.lastgroup[1:])][0]
        return _NAMED, (f"{name} ({match.group()[:48]})" if name in _GENERIC else name)
    if "yahoomailproxy" in agent.lower():
        return _YAHOO, ""
    if agent == "Mozilla/5.0":
        return _MPP, ""
    if "googleimageproxy" in agent.lower():
        return _GMAIL, ""
    if _MAIL_CLIENT.search(agent):
        return _CLIENT, ""
    browser = _BROWSER.search(agent)
    if browser is not None:
        platform = browser.group(1).strip().lower()
        # "compatible;" is how crawlers dress up as browsers; only old Internet Explorer used
        # it for real.
        if not platform.startswith("compatible") or _OLD_IE.search(platform):
            return _CLIENT, ""
    return _OTHER, ""


@lru_cache(maxsize=4_096)
def _from_apple(ip: str) -> bool:
    """Whether ``ip`` is in Apple's networks; False for anything that is not an address."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in APPLE_NETWORKS)


# ---------------------------------------------------------------------------- the message


def _follows_link(hit: HitView) -> bool:
    """A request on one of the message's links: a click, the trap, or a GET on an answer or
    unsubscribe link (their POSTs are a person pressing a button, judged alone)."""
    return hit.kind in ("click", "trap") or (
        hit.kind in ("answer", "unsubscribe") and hit.method.strip().upper() != "POST"
    )


def _bursts(
    links: list[int], hits: Sequence[HitView], times: list[datetime]
) -> list[tuple[datetime, datetime, str]]:
    """The scanner bursts among the link hits ``links`` (indexes in time order): (first, last,
    reason) for each chain of hits at most BURST_WINDOW apart touching BURST_LINKS or more
    distinct links."""
    bursts: list[tuple[datetime, datetime, str]] = []
    chain: list[int] = []
    for i in [*links, -1]:
        if chain and (i < 0 or times[i] - times[chain[-1]] > BURST_WINDOW):
            distinct = len({(hits[j].kind, hits[j].link) for j in chain})
            if distinct >= BURST_LINKS:
                first, last = times[chain[0]], times[chain[-1]]
                span = last - first
                if span <= BURST_WINDOW:
                    reason = f"{distinct} links clicked within {_seconds(span)} s (scanner burst)"
                else:
                    reason = (
                        f"{distinct} links clicked in {_seconds(span)} s, each within"
                        f" {_seconds(BURST_WINDOW)} s of the last (scanner burst)"
                    )
                bursts.append((first, last, reason))
            chain = []
        if i >= 0:
            chain.append(i)
    return bursts


def _burst_at(
    bursts: list[tuple[datetime, datetime, str]],
    starts: list[datetime],
    at: datetime,
    *,
    member: bool,
) -> str | None:
    """The reason of the burst a hit at ``at`` belongs to: inside its span for a link hit
    (``member``), within BURST_WINDOW of it for an open. Bursts are apart by more than
    BURST_WINDOW, so only the two around ``at`` can be near it."""
    index = bisect_right(starts, at) - 1
    for first, last, reason in bursts[max(index, 0) : index + 2]:
        if member and first <= at <= last:
            return reason
        if not member and first - at <= BURST_WINDOW and at - last <= BURST_WINDOW:
            return reason
    return None


def _nearest(times: list[datetime], at: datetime) -> timedelta | None:
    """How far ``at`` is from the closest of the sorted ``times``; None if there are none."""
    index = bisect_right(times, at)
    near = [abs(times[j] - at) for j in (index - 1, index) if 0 <= j < len(times)]
    return min(near) if near else None


# ---------------------------------------------------------------------------- small helpers


def _aware(at: datetime) -> datetime:
    """``at`` with a time zone: naive times (as some databases return them) are UTC."""
    return at if at.utcoffset() is not None else at.replace(tzinfo=UTC)


def _seconds(delta: timedelta) -> str:
    """A duration for a reason: "0.4", "2", "37"."""
    seconds = delta.total_seconds()
    if seconds >= 10:
        return f"{seconds:.0f}"
    return f"{seconds:.1f}".rstrip("0").rstrip(".")


def _clip(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
