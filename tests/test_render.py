"""Rendering an email per recipient, and the signed tokens in its links.

Every message is parsed back with the standard library (``policy.default``), which is the
proof that the hand-assembled MIME is what it claims to be.
"""

from __future__ import annotations

import base64
import binascii
import email
import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from campaigns.content.links import track_links
from campaigns.content.locale import format_duration, format_starts_at
from campaigns.content.mime import (
    InvalidAddress,
    OutgoingEmail,
    Sender,
    make_message_id,
    quoted_printable,
)
from campaigns.content.render import InviteSpec, Renderer, SurveySpec
from campaigns.content.templates import TemplateStore
from campaigns.tracking.tokens import PURPOSES, TRAP_LINK, Tokens, canonical

ROOT = Path(__file__).resolve().parent.parent
BASE = "https://t.example.com"
SECRET = "test-secret-0123456789abcdef"
NOW = datetime(2027, 1, 12, 1, 30, tzinfo=UTC)
LINKS = {
    "app": "https://app.example.com/w/acme",
    "docs": "https://docs.example.com/start?lang=ja&ref=mail",
    "help": "https://help.example.com/",
    "renew": "https://billing.example.com/renew?account=1&plan=business",
    "review": "https://reviews.example.com/example-cloud",
    "video": "https://video.example.com/tour",
    "webinar": "https://webinar.example.com/recordings",
}
LONG_JA_SUBJECT = (
    "【ご案内】{{ account.name }}様 "
    "ご契約更新のお知らせ：更新日（2027年3月31日）までにご確認いただきたいプランとご利用人数、請求先の変更手続き、および今期リリースされた新機能のご紹介について"
)


def context(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "contact": {"name": "山田 太郎", "email": "taro@example.co.jp", "role": "admin"},
        "account": {
            "name": "株式会社サンプル",
            "plan": "business",
            "renewal_date": "2027年3月31日",
            "days_to_renewal": 78,
        },
        "owner": {"name": "佐藤 花子", "email": "hanako@example.com"},
        "journey": {"name": "Low-touch renewal"},
        "links": dict(LINKS),
    }
    values.update(changes)
    return values


@pytest.fixture(scope="module")
def tokens() -> Tokens:
    return Tokens(SECRET, BASE)


@pytest.fixture(scope="module")
def renderer(tokens: Tokens) -> Renderer:
    sender = Sender("cs@example.com", "Example カスタマーサクセス", reply_to="support@example.com")
    return Renderer(TemplateStore(ROOT / "templates"), tokens, sender, domain="mail.example.com")


def render(renderer: Renderer, **kw: Any) -> OutgoingEmail:
    args: dict[str, Any] = {
        "message": 4711,
        "message_id": None,
        "to": "taro@example.co.jp",
        "to_name": "山田 太郎",
        "template": "renewal_reminder",
        "locale": "ja",
        "subject": "【重要】ご契約更新のご案内",
        "preheader": "更新日は {{ account.renewal_date }} です",
        "context": context(),
        "now": NOW,
    }
    args.update(kw)
    return renderer.render(**args)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(raw: bytes) -> tuple[EmailMessage, str, str]:
    message = parse(raw)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return message, text.get_content(), html.get_content()


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


# -- the message as a whole ----------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_message_is_multipart_alternative_text_first_then_html_in_utf8(
    renderer: Renderer, locale: str
) -> None:
    mail = render(renderer, locale=locale)
    message = parse(mail.raw)
    assert message.get_content_type() == "multipart/alternative"
    assert message["MIME-Version"] == "1.0"
    children = list(message.iter_parts())
    assert [p.get_content_type() for p in children] == ["text/plain", "text/html"]
    for part in children:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
        assert not part.defects
    assert not message.defects
    _, text, html = parts(mail.raw)
    assert "株式会社サンプル" in text and "株式会社サンプル" in html
    assert html.lstrip().lower().startswith("<!doctype html")
    assert f'<html lang="{locale}"' in html


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_raw_bytes_are_7bit_crlf_with_short_lines(renderer: Renderer, locale: str) -> None:
    raw = render(renderer, locale=locale, template="qbr_invite", invite=invite()).raw
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    unsubscribe = next(i for i, line in enumerate(head) if line.startswith(b"List-Unsubscribe:"))
    for i, line in enumerate(raw.split(b"\r\n")):
        assert len(line) <= 998
        # Only List-Unsubscribe holds unbreakable URIs (the mailto, then the https link on a
        # line of its own); everything else folds at 78.
        if i not in (unsubscribe, unsubscribe + 1):
            assert len(line) <= 78, line


def test_japanese_body_goes_base64_and_english_quoted_printable(renderer: Renderer) -> None:
    ja = parse(render(renderer, locale="ja").raw)
    en = parse(render(renderer, locale="en", context=context(account={"name": "Acme"})).raw)
    assert ja.get_body(("plain",))["Content-Transfer-Encoding"] == "base64"  # type: ignore[index]
    assert en.get_body(("plain",))["Content-Transfer-Encoding"] == "quoted-printable"  # type: ignore[index]


@pytest.mark.parametrize(
    "subject",
    ["【重要】ご契約更新のご案内", LONG_JA_SUBJECT, "Café: 5 tips for {{ account.name }}"],
)
def test_subject_decodes_back_exactly_through_rfc_2047(renderer: Renderer, subject: str) -> None:
    mail = render(renderer, subject=subject)
    expected = subject.replace("{{ account.name }}", "株式会社サンプル")
    assert mail.subject == expected
    header = parse(mail.raw)["Subject"]
    assert str(header) == expected and not header.defects
    raw_subject = re.search(rb"\r\nSubject: (.*?)\r\n(?! )", mail.raw, re.S)
    assert raw_subject is not None
    assert raw_subject.group(1).isascii()
    for word in re.findall(rb"=\?[^?]+\?[bqBQ]\?[^?]*\?=", raw_subject.group(1)):
        assert len(word) <= 75  # RFC 2047: an encoded word is at most 75 characters


def test_long_japanese_subject_is_longer_than_a_line_and_folded(renderer: Renderer) -> None:
    mail = render(renderer, subject=LONG_JA_SUBJECT)
    assert len(mail.subject) > 78
    lines = re.search(rb"\r\nSubject: (.*?)\r\n(?! )", mail.raw, re.S).group(0)  # type: ignore[union-attr]
    assert lines.count(b"\r\n ") >= 3


def test_subject_is_one_line_whatever_the_template_or_data_say(renderer: Renderer) -> None:
    mail = render(
        renderer,
        subject="Hello {{ contact.name }}\nsecond line",
        context=context(contact={"name": "Eve\r\nBcc: victim@example.com"}),
    )
    assert mail.subject == "Hello Eve Bcc: victim@example.com second line"
    message = parse(mail.raw)
    assert message["Bcc"] is None
    assert str(message["Subject"]) == mail.subject


def test_plain_ascii_subject_is_not_encoded(renderer: Renderer) -> None:
    mail = render(renderer, locale="en", subject="Your renewal is coming up")
    assert b"\r\nSubject: Your renewal is coming up\r\n" in mail.raw


def test_japanese_display_names_in_from_and_to_decode(renderer: Renderer) -> None:
    mail = render(renderer, to_name="山田 太郎（情報システム部）")
    message = parse(mail.raw)
    sender, recipient = message["From"].addresses[0], message["To"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (
        "Example カスタマーサクセス",
        "cs@example.com",
    )
    assert recipient.display_name == "山田 太郎（情報システム部）"
    assert recipient.addr_spec == "taro@example.co.jp"
    assert message["Reply-To"].addresses[0].addr_spec == "support@example.com"
    assert not message["From"].defects and not message["To"].defects
    assert (mail.to, mail.mail_from) == ("taro@example.co.jp", "cs@example.com")


def test_a_long_japanese_name_is_split_into_encoded_words_of_75_characters(
    renderer: Renderer,
) -> None:
    name = "山田 太郎（株式会社サンプル 情報システム部 部長代理 兼 カスタマーサクセス推進室）"
    mail = render(renderer, to_name=name)
    field = re.search(rb"\r\nTo: (.*?)\r\n(?! )", mail.raw, re.S)
    assert field is not None
    words = re.findall(rb"=\?utf-8\?[bq]\?[^?]*\?=", field.group(1))
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    assert all(len(line) <= 78 for line in field.group(0).split(b"\r\n"))
    # An RFC 2047 decoder joins adjacent encoded words without the space between them.
    display = field.group(1).decode().rsplit("<", 1)[0].strip()
    assert str(make_header(decode_header(display))) == name
    # Python < 3.14 keeps that space in an address (gh-128110); the address is still right.
    recipient = parse(mail.raw)["To"].addresses[0]
    assert recipient.addr_spec == "taro@example.co.jp"
    assert recipient.display_name.replace(" ", "") == name.replace(" ", "")


@pytest.mark.parametrize("name", ['Doe, "JD" John', "O'Brien <admin>", "", None])
def test_ascii_display_names_with_specials_are_quoted(renderer: Renderer, name: str | None) -> None:
    message = parse(render(renderer, to_name=name).raw)
    address = message["To"].addresses[0]
    assert address.addr_spec == "taro@example.co.jp"
    assert address.display_name == (name or "")


def test_message_id_is_new_for_a_new_message_and_kept_on_a_retry(renderer: Renderer) -> None:
    first, second = render(renderer), render(renderer)
    assert first.message_id != second.message_id
    assert re.fullmatch(r"<m4711\.[0-9a-f]{16}@mail\.example\.com>", first.message_id)
    assert parse(first.raw)["Message-ID"] == first.message_id
    retry = render(renderer, message_id=first.message_id)
    assert retry.message_id == first.message_id
    assert parse(retry.raw)["Message-ID"] == first.message_id
    assert parse(retry.raw)["X-Campaigns-Message"] == "4711"


def test_make_message_id_is_unique_and_well_formed() -> None:
    ids = {make_message_id(7, "example.com") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"<m7\.[0-9a-f]{16}@example\.com>", i) for i in ids)
    with pytest.raises(ValueError):
        make_message_id(7, "bad domain>")


def test_a_malformed_message_id_is_refused(renderer: Renderer) -> None:
    with pytest.raises(ValueError):
        render(renderer, message_id="<x@y>\r\nBcc: a@b.c")


def test_date_is_the_clock_passed_in(renderer: Renderer) -> None:
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    message = parse(render(renderer, now=tokyo).raw)
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["Date"].endswith("+0900")


def test_list_unsubscribe_is_the_signed_https_url_with_one_click_post(
    renderer: Renderer, tokens: Tokens
) -> None:
    mail = render(renderer)
    message = parse(mail.raw)
    header = message["List-Unsubscribe"]
    mailto, *urls = re.findall(r"<([^>]+)>", header)
    assert urls == [tokens.unsubscribe_url(4711)]
    assert mailto == tokens.unsubscribe_mailto(4711, "example.com")
    assert urls[0].startswith("https://t.example.com/t/u/")
    assert tokens.loads("unsub", token_of(urls[0])) == {"m": 4711}
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    _, text, html = parts(mail.raw)
    assert f'href="{urls[0]}"' in html and urls[0] in text  # the footer's link is the same


def test_invalid_recipient_addresses_are_refused(renderer: Renderer) -> None:
    for bad in ["no-at-sign", "a@b@c", "a b@example.com", "x@example.com>\r\nBcc: y@z", "@x.jp"]:
        with pytest.raises(InvalidAddress):
            render(renderer, to=bad)


def test_international_domain_is_punycoded(renderer: Renderer) -> None:
    mail = render(renderer, to="taro@例え.jp")
    assert mail.to == "taro@xn--r8jz45g.jp"
    assert parse(mail.raw)["To"].addresses[0].domain == "xn--r8jz45g.jp"


# -- Jinja -----------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_html_autoescapes_contact_data_and_text_keeps_it_verbatim(
    renderer: Renderer, locale: str
) -> None:
    nasty = "<script>alert(1)</script>\"&'"
    mail = render(renderer, locale=locale, context=context(contact={"name": nasty}))
    _, text, html = parts(mail.raw)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&amp;&#39;" in html
    assert nasty in text


def test_missing_optional_data_renders_empty_not_none(renderer: Renderer) -> None:
    mail = render(
        renderer,
        locale="en",
        subject="{{ contact.role }}{{ nothing.at.all }}Renewal for {{ account.name }}",
        context={"account": {"name": "Acme"}, "contact": {"name": None}, "links": {}},
    )
    _, text, html = parts(mail.raw)
    assert mail.subject == "Renewal for Acme"
    assert "Hi there," in text  # {{ contact.name or "there" }}
    assert "None" not in text and "None" not in html


def test_dict_keys_win_over_dict_methods(renderer: Renderer) -> None:
    mail = render(
        renderer,
        subject="{{ account.items }} seats, {{ account.values }}",
        context=context(account={"name": "Acme", "items": 12, "values": "trust"}),
    )
    assert mail.subject == "12 seats, trust"


def test_subject_and_preheader_can_use_the_invite(renderer: Renderer) -> None:
    mail = render(
        renderer,
        template="webinar_invite",
        subject="ご招待：{{ invite.event_name }}",
        preheader="{{ invite.starts_at }} 開催",
        invite=invite(),
    )
    assert mail.subject == "ご招待：第1四半期 製品ウェビナー"
    _, _, html = parts(mail.raw)
    assert "2027年1月20日（水）16:00（日本時間） 開催" in html  # the preheader
    assert "<title>ご招待：第1四半期 製品ウェビナー</title>" in html


def test_jinja_compiles_once_per_template_version(
    tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer = Renderer(TemplateStore(ROOT / "templates"), tokens, Sender("cs@example.com"))
    compiled: list[str] = []
    for env in (renderer._html_env, renderer._text_env):

        def counting(source: str, _original: Any = env.from_string) -> Any:
            compiled.append(source)
            return _original(source)

        monkeypatch.setattr(env, "from_string", counting)
    for i in range(20):
        render(renderer, message=i, subject="件名 {{ contact.name }}")
    # One HTML body, one text body, one subject, one preheader: not one per recipient.
    assert len(compiled) == 4


def test_an_edited_template_is_picked_up_after_the_recheck_interval(
    tokens: Tokens, tmp_path: Path
) -> None:
    import shutil

    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    renderer = Renderer(
        TemplateStore(tmp_path / "templates"), tokens, Sender("cs@x.jp"), recheck_seconds=0
    )
    before = parts(render(renderer, locale="en").raw)[1]
    path = tmp_path / "templates" / "en" / "renewal_reminder.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("Hi ", "Hello "), encoding="utf-8")
    after = parts(render(renderer, locale="en").raw)[1]
    assert before.startswith("Hi ") and after.startswith("Hello ")


# -- surveys and invites -------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "ja"])
@pytest.mark.parametrize(
    ("template", "scale", "values"),
    [("nps_survey", "nps", list(range(11))), ("csat_survey", "csat", [1, 2, 3, 4, 5])],
)
def test_survey_has_one_signed_answer_link_per_score(
    renderer: Renderer, tokens: Tokens, locale: str, template: str, scale: str, values: list[int]
) -> None:
    mail = render(
        renderer, template=template, locale=locale, survey=SurveySpec(scale, question=None)
    )
    _, text, html = parts(mail.raw)
    answers = re.findall(r'href="(https://t\.example\.com/t/a/[^"]+)"', html)
    assert len(answers) == len(values)
    decoded = [tokens.loads("answer", token_of(url)) for url in answers]
    assert decoded == [{"m": 4711, "v": v} for v in values]
    assert re.findall(r"https://t\.example\.com/t/a/\S+", text) == answers
    assert not mail.links  # answer links are tracked by their own endpoint, not as clicks


def test_survey_question_from_the_step_is_shown(renderer: Renderer) -> None:
    question = "Example Cloud を同僚にすすめる可能性はどのくらいありますか？"
    mail = render(renderer, template="nps_survey", survey=SurveySpec("nps", question))
    _, text, html = parts(mail.raw)
    assert question in text and question in html


def test_unknown_survey_scale_is_an_error(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="scale"):
        render(renderer, template="nps_survey", survey=SurveySpec("stars", None))


def invite(**changes: Any) -> InviteSpec:
    values: dict[str, Any] = {
        "event_name": "第1四半期 製品ウェビナー",
        "starts_at": datetime(2027, 1, 20, 16, 0, tzinfo=timezone(timedelta(hours=9))),
        "duration": timedelta(minutes=60),
        "url": "https://webinar.example.com/q1-2027?utm_source=mail&x=1",
        "time_zone": "Asia/Tokyo",
    }
    values.update(changes)
    return InviteSpec(**values)


@pytest.mark.parametrize("template", ["qbr_invite", "webinar_invite", "webinar_reminder"])
def test_invite_has_yes_and_no_rsvp_links_and_a_tracked_join_link(
    renderer: Renderer, tokens: Tokens, template: str
) -> None:
    mail = render(renderer, template=template, invite=invite())
    _, text, html = parts(mail.raw)
    answers = re.findall(r'href="(https://t\.example\.com/t/a/[^"]+)"', html)
    assert [tokens.loads("answer", token_of(u)) for u in answers] == [
        {"m": 4711, "v": "yes"},
        {"m": 4711, "v": "no"},
    ]
    assert all(url in text for url in answers)
    assert mail.links == ("https://webinar.example.com/q1-2027?utm_source=mail&x=1",)
    starts = "2027年1月20日（水）16:00（日本時間）"
    assert starts in html and starts in text
    assert "60分" in text


def test_invite_without_a_join_url_renders_without_it(renderer: Renderer) -> None:
    mail = render(renderer, template="qbr_invite", invite=invite(url=None))
    _, text, _ = parts(mail.raw)
    assert mail.links == ()
    assert "参加用リンク" not in text


def test_invite_time_is_shown_in_the_recipients_zone_and_words() -> None:
    start = datetime(2027, 1, 20, 7, 0, tzinfo=UTC)
    assert format_starts_at(start, "Asia/Tokyo", "ja") == "2027年1月20日（水）16:00（日本時間）"
    assert format_starts_at(start, "Europe/Berlin", "ja") == (
        "2027年1月20日（水）8:00（中央ヨーロッパ時間）"
    )
    assert format_starts_at(start, "America/New_York", "en") == (
        "Wednesday, January 20, 2027 at 2:00 AM EST"
    )
    assert format_starts_at(start, "Asia/Tokyo", "en-GB") == (
        "Wednesday, 20 January 2027 at 16:00 JST"  # British order and clock
    )
    assert format_starts_at(start, "Not/AZone", "en") == (
        "Wednesday, January 20, 2027 at 7:00 AM UTC"
    )
    with pytest.raises(ValueError):
        format_starts_at(datetime(2027, 1, 20, 7, 0), "UTC", "en")


@pytest.mark.parametrize(
    ("minutes", "ja", "en"),
    [
        (1, "1分", "1 minute"),
        (45, "45分", "45 minutes"),
        (60, "60分", "60 minutes"),
        (90, "90分", "90 minutes"),
        (150, "2時間30分", "2 hours 30 minutes"),
        (180, "3時間", "3 hours"),
    ],
)
def test_durations_read_naturally(minutes: int, ja: str, en: str) -> None:
    assert format_duration(timedelta(minutes=minutes), "ja") == ja
    assert format_duration(timedelta(minutes=minutes), "en") == en
    assert format_duration(None, "ja") == ""


# -- links ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template", ["onboarding_welcome", "usage_drop_nudge", "renewal_reminder", "webinar_followup"]
)
@pytest.mark.parametrize("locale", ["en", "ja"])
def test_every_http_link_in_the_html_is_a_click_url_pointing_into_links(
    renderer: Renderer, tokens: Tokens, template: str, locale: str
) -> None:
    mail = render(renderer, template=template, locale=locale)
    _, _, html = parts(mail.raw)
    hrefs = re.findall(r'href="([^"]*)"', html)
    own = ("/t/u/", "/t/p/")
    clicks = [h for h in hrefs if not any(p in h for p in own) and not h.startswith("mailto:")]
    assert clicks and all(h.startswith("https://t.example.com/t/c/") for h in clicks)
    decoded = [tokens.loads("click", token_of(h)) for h in clicks]
    assert all(d is not None and d["m"] == 4711 for d in decoded)
    assert [d["l"] for d in decoded if d is not None].count(
        TRAP_LINK
    ) == 1  # the hidden trap link, once
    destinations = [mail.links[d["l"]] for d in decoded if d is not None and d["l"] != TRAP_LINK]
    assert set(destinations) == set(mail.links) <= set(LINKS.values())
    assert len(mail.links) == len(set(mail.links))  # de-duplicated
    # Autoescaped in the template (&amp;), stored exactly as given.
    if template == "renewal_reminder":
        assert mail.links == (LINKS["renew"],)


@pytest.mark.parametrize("locale", ["en", "ja"])
def test_text_part_uses_the_same_click_urls_as_the_html(renderer: Renderer, locale: str) -> None:
    mail = render(renderer, template="onboarding_welcome", locale=locale)
    _, text, html = parts(mail.raw)
    html_clicks = set(re.findall(r'href="(https://t\.example\.com/t/c/[^"]+)"', html))
    html_clicks = {
        u
        for u in html_clicks
        if (renderer.tokens.loads("click", token_of(u)) or {}).get("l") != TRAP_LINK
    }
    text_clicks = set(re.findall(r"https://t\.example\.com/t/c/[A-Za-z0-9_.-]+", text))
    assert text_clicks == html_clicks
    for url in LINKS.values():
        assert url not in text


def test_open_pixel_sits_just_before_the_end_of_the_body(
    renderer: Renderer, tokens: Tokens
) -> None:
    _, _, html = parts(render(renderer).raw)
    pixel = re.search(
        r'<img src="([^"]+)" width="1" height="1" alt="" style="display:none" />', html
    )
    assert pixel is not None
    assert html[pixel.end() :].strip() == "</body></html>"
    assert pixel.group(1).endswith(".gif")
    assert tokens.loads("open", token_of(pixel.group(1))) == {"m": 4711}


def test_track_links_leaves_mailto_anchors_and_own_urls_alone(tokens: Tokens) -> None:
    html = (
        '<html><body><a href="mailto:cs@example.com">mail</a> <a href="#top">top</a>'
        f"<a href=\"{BASE}/t/u/abc\">unsub</a> <A HREF='https://x.example/a?b=1&amp;c=2'>x</A>"
        '<a class="b" href="https://x.example/a?b=1&amp;c=2">again</a>'
        '<a href="http://y.example/">y</a></body></html>'
    )
    text = "See https://x.example/a?b=1&c=2. Or (http://y.example/), or https://z.example/."
    new_html, new_text, links = track_links(html, text, tokens, 9)
    assert links == ("https://x.example/a?b=1&c=2", "http://y.example/")
    assert 'href="mailto:cs@example.com"' in new_html and 'href="#top"' in new_html
    assert f'href="{BASE}/t/u/abc"' in new_html
    first, second = tokens.click_url(9, 0), tokens.click_url(9, 1)
    assert new_html.count(first) == 2 and new_html.count(second) == 1
    assert new_text == f"See {first}. Or ({second}), or https://z.example/."


# -- tokens ----------------------------------------------------------------------------------


def test_each_url_carries_a_token_for_its_own_purpose(tokens: Tokens) -> None:
    urls = {
        "open": tokens.open_url(5),
        "click": tokens.click_url(5, 2),
        "answer": tokens.answer_url(5, 9),
        "unsub": tokens.unsubscribe_url(5),
        "prefs": tokens.preferences_url(5),
    }
    assert re.fullmatch(r"https://t\.example\.com/t/o/[\w.-]+\.gif", urls["open"])
    for purpose, path in [("click", "c"), ("answer", "a"), ("unsub", "u"), ("prefs", "p")]:
        assert re.fullmatch(rf"https://t\.example\.com/t/{path}/[\w.-]+", urls[purpose])
    payloads = {p: tokens.loads(p, token_of(u)) for p, u in urls.items()}
    assert payloads == {
        "open": {"m": 5},
        "click": {"m": 5, "l": 2},
        "answer": {"m": 5, "v": 9},
        "unsub": {"m": 5},
        "prefs": {"m": 5},
    }
    for purpose, url in urls.items():
        for other in PURPOSES:
            if other != purpose:
                assert tokens.loads(other, token_of(url)) is None


def test_tokens_are_exactly_itsdangerous_tokens(tokens: Tokens) -> None:
    serializer = URLSafeSerializer(
        SECRET, salt="campaigns.tokens.click", signer_kwargs={"digest_method": hashlib.sha256}
    )
    token = token_of(tokens.click_url(123, 4))
    assert serializer.loads(token) == {"m": 123, "l": 4}
    assert token == serializer.dumps({"m": 123, "l": 4})
    assert tokens.loads("answer", token_of(tokens.answer_url(1, 'x"y'))) == {"m": 1, "v": 'x"y'}
    assert tokens.loads("click", tokens.dumps("click", {"m": 1, "l": 0})) == {"m": 1, "l": 0}


@settings(max_examples=300, deadline=None)
@given(
    purpose=st.sampled_from(list(PURPOSES)),
    payload=st.dictionaries(
        st.sampled_from(["m", "l", "v"]), st.integers(-5, 10**12) | st.text(max_size=8)
    ),
    edit=st.integers(0, 200),
    char=st.characters(codec="ascii"),
)
def test_fast_verification_agrees_with_itsdangerous_on_good_and_mutated_tokens(
    purpose: str, payload: dict, edit: int, char: str
) -> None:
    tokens = Tokens(SECRET, "https://t.example.com")
    token = tokens.dumps(purpose, payload)
    assert tokens.loads(purpose, token) == tokens.loads_slowly(purpose, token) == payload
    mutated = token[: edit % len(token)] + char + token[edit % len(token) + 1 :]
    assert tokens.loads(purpose, mutated) == tokens.loads_slowly(purpose, mutated)
    for other in PURPOSES:
        if other != purpose:
            assert tokens.loads(other, token) is None


def test_tokens_carry_no_personal_data(renderer: Renderer, tokens: Tokens) -> None:
    mail = render(renderer, template="nps_survey", survey=SurveySpec("nps", None))
    raw_tokens = re.findall(rb"/t/[ocaup]/([\w.-]+)", mail.raw)
    assert raw_tokens
    for token in raw_tokens:
        payload = token.split(b".")[0]
        assert b"taro" not in payload and b"@" not in payload
        assert len(token) < 100


def test_forged_altered_truncated_or_foreign_tokens_decode_to_nothing(tokens: Tokens) -> None:
    token = token_of(tokens.unsubscribe_url(42))
    body, signature = token.split(".")
    other = Tokens("another-secret-0123456789", BASE)
    forged_body = "eyJtIjo0M30"  # {"m":43}
    for bad in [
        "",
        ".",
        token[:-1],
        token[:-10],
        body,
        f"{body}.",
        f"{forged_body}.{signature}",
        token_of(other.unsubscribe_url(42)),
        token + "x",
        token.upper(),
        "x" * 5000,
    ]:
        assert tokens.loads("unsub", bad) is None, bad
    assert tokens.loads("unknown", token) is None
    assert tokens.loads("unsub", None) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tokens.dumps("unknown", {"m": 1})
    with pytest.raises(TypeError):
        tokens.click_url("1", 0)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from(PURPOSES))
def test_random_strings_never_raise_and_never_decode(junk: str, purpose: str) -> None:
    assert Tokens(SECRET, BASE).loads(purpose, junk) is None


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="


@settings(max_examples=400, deadline=None)
@given(
    message=st.integers(min_value=0, max_value=2**53),
    value=st.one_of(st.integers(0, 10), st.sampled_from(["yes", "no"])),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["replace", "insert", "delete"]),
            st.integers(min_value=0),
            st.sampled_from(_ALPHABET),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_a_mutated_token_never_decodes_to_a_different_payload(
    message: int, value: int | str, edits: list[tuple[str, int, str]]
) -> None:
    tokens = Tokens(SECRET, BASE)
    token = token_of(tokens.answer_url(message, value))
    mutated = list(token)
    for kind, at, char in edits:
        position = at % (len(mutated) + 1)
        if kind == "insert":
            mutated.insert(position, char)
        elif mutated and kind == "replace":
            mutated[position % len(mutated)] = char
        elif mutated:
            del mutated[position % len(mutated)]
    mutated_token = "".join(mutated)
    result = tokens.loads("answer", mutated_token)
    # Even a change that leaves the bytes meaning the same (base64's unused low bits) is refused.
    assert result is None if mutated_token != token else result == {"m": message, "v": value}


# -- one spelling per token --------------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\u00a0", "\u2028", "\u3000", "\ufeff"]


def unpadded_decode(part: str) -> bytes:
    """What a lenient decoder (the stdlib's, itsdangerous') makes of a token part."""
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def equivalents(part: str) -> list[str]:
    """``part`` with its last character replaced by each other one that decodes to the same
    bytes."""
    return [
        part[:-1] + c
        for c in B64
        if c != part[-1] and unpadded_decode(part[:-1] + c) == unpadded_decode(part)
    ]


@st.composite
def respelt(draw: st.DrawFn, token: str) -> str:
    """``token`` padded, extended, with a last character swapped for an equivalent one, a
    letter's case changed or whitespace put in: the spellings a lenient decoder accepts."""
    body, signature = token.split(".")
    kind = draw(
        st.sampled_from(
            ["pad", "append", "prepend", "equivalent", "case", "whitespace", "pad_body"]
        )
    )
    if kind == "pad":
        return (
            token
            + "=" * draw(st.integers(1, 3))
            + draw(st.sampled_from(["", "x", "==", ".", "\n"]))
        )
    if kind == "append":
        return token + draw(st.characters())
    if kind == "prepend":
        return draw(st.characters()) + token
    if kind == "equivalent":
        part = draw(st.sampled_from(["body", "signature"]))
        options = equivalents(body if part == "body" else signature)
        if not options:  # a body whose length leaves no unused bits
            return token
        swapped = draw(st.sampled_from(options))
        return f"{swapped}.{signature}" if part == "body" else f"{body}.{swapped}"
    if kind == "case":
        at = draw(st.integers(0, len(token) - 1))
        return token[:at] + token[at].swapcase() + token[at + 1 :]
    if kind == "whitespace":
        at = draw(st.integers(0, len(token)))
        return token[:at] + draw(st.sampled_from(WHITESPACE)) + token[at:]
    return body + "=" * draw(st.integers(1, 2)) + "." + signature


def test_padding_stray_bytes_and_equivalent_last_characters_are_refused(tokens: Tokens) -> None:
    token = token_of(tokens.click_url(7, 1))
    body, signature = token.split(".")
    assert (
        len(signature) == 43 and len(equivalents(signature)) == 3
    )  # 2 bits of its last character carry nothing
    lenient = [
        token + "=",
        token + "==",
        token + "=x",
        token + "\n",
        f"{body}=.{signature}",
        *(f"{body}.{s}" for s in equivalents(signature)),
    ]
    for spelling in lenient:
        # A naive check (decode, then compare the bytes) would take each of these ...
        assert unpadded_decode(spelling.split(".")[1].strip()) == unpadded_decode(
            signature
        ) or spelling.startswith(f"{body}=")
        # ... and neither verification does.
        assert tokens.loads("click", spelling) is None, spelling
        assert tokens.loads_slowly("click", spelling) is None, spelling
        assert not canonical(spelling)
    assert tokens.loads("click", token) == tokens.loads_slowly("click", token) == {"m": 7, "l": 1}
    assert canonical(token)


@settings(max_examples=500, deadline=None)
@given(
    purpose=st.sampled_from(list(PURPOSES)),
    payload=st.dictionaries(
        st.sampled_from(["m", "l", "v"]), st.integers(-5, 10**12) | st.text(max_size=8)
    ),
    data=st.data(),
)
def test_every_other_spelling_of_a_token_is_refused_by_both_verifications(
    purpose: str, payload: dict, data: st.DataObject
) -> None:
    tokens = Tokens(SECRET, BASE)
    token = tokens.dumps(purpose, payload)
    spelling = data.draw(respelt(token))
    if spelling == token:  # a case change of a digit, '-' or '_'
        assert tokens.loads(purpose, spelling) == tokens.loads_slowly(purpose, spelling) == payload
    else:
        assert tokens.loads(purpose, spelling) is None
        assert tokens.loads_slowly(purpose, spelling) is None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=B64 + ".=" + "".join(WHITESPACE), max_size=60))
def test_canonical_agrees_with_decoding_and_re_encoding(text: str) -> None:
    def by_re_encoding(part: str) -> bool:
        try:
            data = base64.b64decode(
                part.translate(str.maketrans("-_", "+/")) + "=" * (-len(part) % 4), validate=True
            )
        except ValueError:  # binascii.Error, and non-ASCII text
            return False
        return bool(part) and base64.urlsafe_b64encode(data).rstrip(b"=").decode() == part

    assert canonical(text) == all(by_re_encoding(part) for part in text.split("."))


# -- MIME bodies -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=600), st.text(alphabet="=é \tあa.\n\x01", max_size=600)))
def test_quoted_printable_round_trips_with_short_lines(text: str) -> None:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = quoted_printable(body)
    assert encoded.isascii()
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert not re.search(rb"[ \t]\r\n|[ \t]\Z", encoded)  # no bare whitespace at a line end
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert binascii.a2b_qp(encoded) == body.replace("\n", "\r\n").encode()


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(max_size=400),
    html=st.one_of(st.text(max_size=400), st.text(alphabet="<>a =é\n", max_size=400)),
)
def test_any_body_reads_back_through_the_email_parser(
    renderer: Renderer, text: str, html: str
) -> None:
    raw = renderer.assemble(
        message=1,
        message_id="<m1.x@example.com>",
        to="a@example.com",
        to_name=None,
        subject="s",
        html=html,
        text=text,
        unsubscribe_url=f"{BASE}/t/u/x",
        now=NOW,
    )
    assert raw.isascii()
    message = parse(raw)
    got = [p.get_content() for p in message.iter_parts()]

    def normal(body: str) -> str:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
        return body if body.endswith("\n") else body + "\n"

    assert [normal(g) for g in got] == [normal(text), normal(html)]


def test_every_email_has_one_hidden_trap_link_no_person_can_click(renderer: Renderer) -> None:
    mail = render(renderer, template="onboarding_welcome", locale="ja")
    _, text, html = parts(mail.raw)
    traps = [
        m
        for m in re.finditer(r'<a href="([^"]+)"([^>]*)></a>', html)
        if (renderer.tokens.loads("click", token_of(m.group(1))) or {}).get("l") == TRAP_LINK
    ]
    assert len(traps) == 1
    assert "display:none" in traps[0].group(2) and 'aria-hidden="true"' in traps[0].group(2)
    assert traps[0].group(1) not in text  # not in the text part either
