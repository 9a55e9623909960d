"""Telling people from machines in tracking hits: prefetching proxies, link scanners, the trap
link, and the human patterns that must survive all of it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.store.enums import Classification
from campaigns.tracking import classify
from campaigns.tracking.classify import HitView, Verdict, classify_hits, classify_one

HUMAN, MACHINE, UNKNOWN = Classification.HUMAN, Classification.MACHINE, Classification.UNKNOWN

SENT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = (
    "Mozilla/5.0 (compatible; YahooMailProxy; "
    "https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html)"
)
MPP = "Mozilla/5.0"
BING_PREVIEW = (
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/64.0.3282.140 Safari/537.36 Edge/17.17134 BingPreview/1.0b"
)
HOME_IP = "203.0.113.7"
APPLE_IP = "17.58.63.201"


def after(seconds: float) -> datetime:
    return SENT + timedelta(seconds=seconds)


def open_(seconds: float, ua: str = CHROME, ip: str = HOME_IP, method: str = "GET") -> HitView:
    return HitView(kind="open", at=after(seconds), method=method, user_agent=ua, ip=ip)


def click(
    seconds: float, link: int, ua: str = CHROME, ip: str = HOME_IP, method: str = "GET"
) -> HitView:
    return HitView(kind="click", at=after(seconds), method=method, user_agent=ua, ip=ip, link=link)


def trap(seconds: float, ua: str = CHROME) -> HitView:
    return HitView(kind="trap", at=after(seconds), user_agent=ua, ip="52.100.1.1", link=-1)


def classes(verdicts: list[Verdict]) -> list[Classification]:
    return [v.classification for v in verdicts]


# ---------------------------------------------------------------------------- opens


def test_apple_mpp_prefetch_at_delivery_is_machine():
    verdict = classify_hits([open_(1.2, ua=MPP, ip=APPLE_IP)], sent_at=SENT)[0]
    assert verdict.classification == MACHINE
    assert "Apple Mail Privacy Protection" in verdict.reason


def test_mpp_user_agent_alone_or_apple_network_alone_is_mpp():
    by_agent = classify_one(open_(30, ua=MPP, ip="198.51.100.4"), sent_at=SENT)
    by_network = classify_one(open_(30, ua=IPHONE_MAIL, ip="17.1.2.3"), sent_at=SENT)
    by_mapped_ipv6 = classify_one(open_(30, ua=IPHONE_MAIL, ip="::ffff:17.1.2.3"), sent_at=SENT)
    for verdict in (by_agent, by_network, by_mapped_ipv6):
        assert verdict == Verdict(MACHINE, "Apple Mail Privacy Protection prefetch")


def test_iphone_mail_from_a_home_network_is_human():
    verdict = classify_one(open_(20 * 60, ua=IPHONE_MAIL, ip="2001:db8:1234::42"), sent_at=SENT)
    assert verdict == Verdict(HUMAN, "browser or mail client")


def test_a_click_from_apples_network_is_not_mpp():
    # MPP prefetches images, never links: an Apple employee clicking at work is a person.
    assert (
        classify_one(click(600, 0, ua=IPHONE_MAIL, ip=APPLE_IP), sent_at=SENT).classification
        == HUMAN
    )


def test_gmail_proxy_open_an_hour_later_is_human():
    verdict = classify_hits([open_(3600, ua=GMAIL_PROXY, ip="66.249.84.10")], sent_at=SENT)[0]
    assert verdict.classification == HUMAN
    assert "Gmail image proxy" in verdict.reason


def test_gmail_proxy_on_a_link_is_machine():
    verdict = classify_one(click(3600, 0, ua=GMAIL_PROXY), sent_at=SENT)
    assert verdict.classification == MACHINE and "Gmail image proxy" in verdict.reason


def test_yahoo_proxy_prefetch_is_machine():
    verdict = classify_one(open_(4, ua=YAHOO_PROXY, ip="98.136.0.10"), sent_at=SENT)
    assert verdict.classification == MACHINE
    assert "Yahoo" in verdict.reason


def test_outlook_desktop_open_is_human():
    assert classify_one(open_(900, ua=OUTLOOK), sent_at=SENT) == Verdict(
        HUMAN, "browser or mail client"
    )


def test_an_open_right_after_sending_is_unknown_not_human():
    verdict = classify_one(open_(1, ua=GMAIL_PROXY), sent_at=SENT)
    assert verdict == Verdict(UNKNOWN, "opened 1 s after sending (too soon to tell)")
    assert (
        classify_one(
            open_(classify.FAST_OPEN.total_seconds() + 1, ua=GMAIL_PROXY), sent_at=SENT
        ).classification
        == HUMAN
    )


def test_an_open_a_day_later_is_human():
    assert classify_hits([open_(86_400, ua=IPHONE_MAIL)], sent_at=SENT)[0].classification == HUMAN


# ---------------------------------------------------------------------------- clicks and scanners


def test_scanner_clicking_all_six_links_within_two_seconds_is_machine_even_as_chrome():
    clicks = [click(30 + 0.2 * link, link) for link in range(6)]
    # The first click alone looks like a person...
    assert classes(classify_hits(clicks[:1], sent_at=SENT)) == [HUMAN]
    # ...until the second link comes 0.2 s later: both become machine.
    assert classes(classify_hits(clicks[:2], sent_at=SENT)) == [MACHINE, MACHINE]
    verdicts = classify_hits(clicks, sent_at=SENT)
    assert classes(verdicts) == [MACHINE] * 6
    assert all(v.reason == "6 links clicked within 1 s (scanner burst)" for v in verdicts)


def test_the_open_a_scanner_fetches_with_its_burst_is_machine_but_a_later_open_is_not():
    hits = [
        open_(29.5),
        *(click(30 + 0.3 * link, link) for link in range(4)),
        open_(3600, ua=OUTLOOK),
    ]
    verdicts = classify_hits(hits, sent_at=SENT)
    assert classes(verdicts) == [MACHINE] * 5 + [HUMAN]
    assert "scanner burst" in verdicts[0].reason and verdicts[0].reason.startswith("opened")


def test_a_slow_scan_chains_past_the_burst_window():
    clicks = [click(60 + 1.5 * link, link) for link in range(6)]  # 7.5 s in all, 1.5 s apart
    verdicts = classify_hits(clicks, sent_at=SENT)
    assert classes(verdicts) == [MACHINE] * 6
    assert (
        verdicts[0].reason
        == "6 links clicked in 7.5 s, each within 2 s of the last (scanner burst)"
    )


def test_verdicts_do_not_depend_on_the_order_hits_arrive_in():
    hits = [
        open_(29.5),
        *(click(30 + 0.2 * link, link) for link in range(6)),
        click(400, 2),
        trap(31),
    ]
    expected = classify_hits(hits, sent_at=SENT)
    shuffled = list(range(len(hits)))
    random.Random(7).shuffle(shuffled)
    verdicts = classify_hits([hits[i] for i in shuffled], sent_at=SENT)
    assert verdicts == [expected[i] for i in shuffled]


def test_head_request_is_machine():
    verdict = classify_one(click(3600, 0, method="HEAD"), sent_at=SENT)
    assert verdict == Verdict(MACHINE, "HEAD request (link scanners check links this way)")


def test_a_head_check_makes_the_get_on_another_link_a_burst():
    verdicts = classify_hits([click(40, 0, method="HEAD"), click(40.5, 1)], sent_at=SENT)
    assert classes(verdicts) == [MACHINE, MACHINE]
    assert "HEAD" in verdicts[0].reason and "2 links" in verdicts[1].reason


def test_other_methods_are_machine():
    assert classify_one(click(3600, 0, method="OPTIONS"), sent_at=SENT).classification == MACHINE


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [
        (BING_PREVIEW, "BingPreview"),
        ("Mozilla/5.0 (compatible; Proofpoint URL Defense)", "Proofpoint"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) SafeLinks/1.0", "Safe Links"),
        ("Microsoft Office Existence Discovery", "Microsoft Office link check"),
        ("Mimecast-URL-Protect/1.0", "Mimecast"),
        ("Barracuda Sentinel (EE)", "Barracuda"),
        ("python-requests/2.31.0", "python-requests"),
        ("curl/8.4.0", "curl"),
        ("Go-http-client/1.1", "Go HTTP client"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/124.0.0.0 Safari/537.36",
            "headless Chrome",
        ),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slack link preview"),
        (
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
            "skype-url-preview@microsoft.com",
            "Teams/Skype link preview",
        ),
        (
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "LinkedIn link preview",
        ),
        (
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Facebook link preview",
        ),
        ("WhatsApp/2.23.20.0 A", "WhatsApp link preview"),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "bot (Googlebot)",
        ),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "bot (AhrefsBot)"),
    ],
)
def test_known_scanners_bots_and_libraries_are_machine_and_named(user_agent, name):
    verdict = classify_one(click(3600, 0, ua=user_agent), sent_at=SENT)
    assert verdict.classification == MACHINE
    assert name in verdict.reason


def test_a_phone_called_cubot_is_not_a_bot():
    cubot = (
        "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    )
    assert classify_one(click(3600, 0, ua=cubot), sent_at=SENT) == Verdict(
        HUMAN, "browser or mail client"
    )


def test_an_empty_user_agent_is_machine():
    for user_agent in ("", "   "):
        verdict = classify_one(open_(3600, ua=user_agent), sent_at=SENT)
        assert verdict.classification == MACHINE and "no user agent" in verdict.reason


def test_a_crawler_posing_as_mozilla_is_unknown_but_old_internet_explorer_is_a_browser():
    assert classify_one(
        click(3600, 0, ua="Mozilla/5.0 (compatible; FooFetch/1.0)"), sent_at=SENT
    ) == Verdict(UNKNOWN, "unrecognised user agent")
    ie9 = "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)"
    assert classify_one(click(3600, 0, ua=ie9), sent_at=SENT).classification == HUMAN
    assert classify_one(click(3600, 0, ua="SomeAgent"), sent_at=SENT).classification == UNKNOWN


def test_a_click_seconds_after_sending_is_faster_than_a_person():
    verdict = classify_one(click(3, 0), sent_at=SENT)
    assert verdict == Verdict(MACHINE, "clicked 3 s after sending: faster than a person")
    skewed = classify_one(click(-4, 0), sent_at=SENT)  # our clock ahead of the web server's
    assert skewed == Verdict(MACHINE, "clicked 0 s after sending: faster than a person")
    assert (
        classify_one(click(3, 0), sent_at=None).classification == HUMAN
    )  # no sending time: no rule


# ---------------------------------------------------------------------------- the trap link


def test_the_trap_link_is_always_machine():
    for user_agent in (CHROME, IPHONE_MAIL, OUTLOOK):
        verdict = classify_one(trap(86_400, ua=user_agent), sent_at=SENT)
        assert verdict.classification == MACHINE and "hidden trap link" in verdict.reason


def test_clicks_and_opens_with_a_trap_click_are_machine():
    hits = [open_(39, ua=OUTLOOK), click(41, 0), trap(45), click(54, 3), click(300, 0)]
    verdicts = classify_hits(hits, sent_at=SENT)
    assert classes(verdicts) == [MACHINE, MACHINE, MACHINE, MACHINE, HUMAN]
    assert verdicts[0].reason == "opened with the hidden trap link (6 s apart)"
    assert verdicts[3].reason == "clicked with the hidden trap link (9 s apart)"


# ---------------------------------------------------------------------------- people, who must not
# be swallowed


def test_one_click_forty_seconds_after_delivery_is_human():
    assert classify_hits([click(40, 0)], sent_at=SENT) == [Verdict(HUMAN, "browser or mail client")]


def test_two_different_links_clicked_thirty_seconds_apart_are_human():
    assert classes(classify_hits([click(300, 0), click(330, 1)], sent_at=SENT)) == [HUMAN, HUMAN]


def test_the_same_link_double_clicked_is_not_a_burst():
    assert classes(
        classify_hits([click(300, 2), click(300.6, 2), click(301.2, 2)], sent_at=SENT)
    ) == [HUMAN, HUMAN, HUMAN]


def test_a_human_open_followed_by_human_clicks_stays_human():
    hits = [
        open_(600, ua=IPHONE_MAIL),
        click(640, 1, ua=IPHONE_MAIL),
        click(700, 3, ua=IPHONE_MAIL),
    ]
    assert classes(classify_hits(hits, sent_at=SENT)) == [HUMAN, HUMAN, HUMAN]


def test_an_answer_posted_three_seconds_after_a_human_open_is_human():
    answer = HitView(kind="answer", at=after(603), method="POST", user_agent=CHROME, ip=HOME_IP)
    verdicts = classify_hits([open_(600, ua=OUTLOOK), answer], sent_at=SENT)
    assert classes(verdicts) == [HUMAN, HUMAN]
    assert "pressed a button" in verdicts[1].reason


def test_a_posted_answer_is_human_even_right_after_sending_and_inside_a_burst():
    answer = HitView(kind="answer", at=after(2), method="POST", user_agent=CHROME, ip=HOME_IP)
    hits = [answer, click(2.1, 0), click(2.2, 1), trap(2.3)]
    assert classes(classify_hits(hits, sent_at=SENT)) == [HUMAN, MACHINE, MACHINE, MACHINE]


def test_a_posted_answer_from_a_script_is_machine():
    answer = HitView(
        kind="answer", at=after(600), method="POST", user_agent="python-requests/2.31.0"
    )
    assert classify_one(answer, sent_at=SENT).classification == MACHINE


def test_a_one_click_unsubscribe_from_the_mail_provider_is_human():
    one_click = HitView(
        kind="unsubscribe", at=after(5000), method="POST", user_agent="", ip="209.85.220.41"
    )
    assert classify_one(one_click, sent_at=SENT).classification == HUMAN


def test_a_get_on_an_answer_link_is_a_link_hit():
    get = HitView(kind="answer", at=after(30.5), method="GET", user_agent=CHROME)
    assert classes(classify_hits([click(30, 0), get], sent_at=SENT)) == [MACHINE, MACHINE]


# ---------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "ip",
    [
        "",
        "not-an-ip",
        "999.1.1.1",
        "17.0.0.0/8",
        "17.1.2.3:443",
        "fe80::1%eth0",
        "2620:149:a44::10",
        "\x00",
        "1" * 500,
    ],
)
def test_garbage_and_odd_addresses_never_raise(ip):
    verdict = classify_one(open_(3600, ua=IPHONE_MAIL, ip=ip), sent_at=SENT)
    assert verdict.classification == (MACHINE if ip.startswith("2620:149:") else HUMAN)


def test_naive_times_are_taken_as_utc():
    naive = HitView(kind="click", at=after(3).replace(tzinfo=None), user_agent=CHROME, link=0)
    assert classify_hits(
        [naive, click(3.5, 1)], sent_at=SENT.replace(tzinfo=None)
    ) == classify_hits([click(3, 0), click(3.5, 1)], sent_at=SENT)


def test_reasons_fit_the_column():
    verdict = classify_one(click(3600, 0, method="X" * 1000), sent_at=SENT)
    assert verdict.classification == MACHINE and len(verdict.reason) <= classify.MAX_REASON


USER_AGENTS = [
    CHROME,
    IPHONE_MAIL,
    OUTLOOK,
    GMAIL_PROXY,
    YAHOO_PROXY,
    MPP,
    BING_PREVIEW,
    "",
    "python-requests/2.31.0",
]
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

hit_views = st.builds(
    HitView,
    kind=st.one_of(st.sampled_from(classify.KINDS), st.text(max_size=12)),
    at=st.one_of(
        st.datetimes(timezones=st.just(UTC)),
        st.integers(0, 120_000).map(lambda ms: BASE + timedelta(milliseconds=ms)),
    ),
    method=st.one_of(st.sampled_from(["GET", "GET", "HEAD", "POST", "get"]), st.text(max_size=20)),
    user_agent=st.one_of(st.sampled_from(USER_AGENTS), st.text(max_size=300)),
    ip=st.one_of(
        st.sampled_from([HOME_IP, APPLE_IP, "::ffff:17.0.0.1", "2001:db8::1", ""]),
        st.text(max_size=60),
    ),
    link=st.one_of(st.none(), st.integers(-1, 8)),
)
sent_times = st.one_of(st.none(), st.just(BASE), st.datetimes(timezones=st.just(UTC)))


@given(st.lists(hit_views, max_size=25), sent_times)
def test_every_hit_gets_one_verdict_with_a_short_reason(hits, sent_at):
    verdicts = classify_hits(hits, sent_at=sent_at)
    assert len(verdicts) == len(hits)
    for hit, verdict in zip(hits, verdicts, strict=True):
        assert isinstance(verdict.classification, Classification)
        assert 0 < len(verdict.reason) <= classify.MAX_REASON
        alone = classify_one(hit, sent_at=sent_at)
        assert (
            verdict == alone or verdict.classification == MACHINE
        )  # other hits only ever make a hit machine


@given(st.lists(hit_views, max_size=15), st.lists(hit_views, max_size=15), sent_times)
def test_more_hits_never_turn_a_machine_verdict_human(hits, more, sent_at):
    before = classify_hits(hits, sent_at=sent_at)
    now = classify_hits(hits + more, sent_at=sent_at)[: len(hits)]
    for old, new in zip(before, now, strict=True):
        if old.classification == MACHINE:
            assert new.classification == MACHINE
