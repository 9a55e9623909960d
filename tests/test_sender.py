"""The sender identity (templates/sender.yaml) and what it puts in every customer email: From
and Reply-To per brand and locale, the four legal items of 特定電子メール法 in the Japanese
footer, List-Id, Feedback-ID, both List-Unsubscribe URIs, and a DKIM signature that verifies.
Mail goes through the engine on both databases into a real SMTP server (aiosmtpd) on
loopback and is read back with :mod:`email`."""

from __future__ import annotations

import base64
import email
import re
import subprocess
import textwrap
from datetime import date
from decimal import Decimal
from email import policy
from email.header import decode_header, make_header
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import config
from campaigns.channels.transports import push_mail, transport_from_url
from campaigns.clock import FakeClock
from campaigns.content import footer, mime
from campaigns.content.dkim import Signer
from campaigns.content.mime import Sender
from campaigns.content.render import Origin, Renderer
from campaigns.content.sender import OWNER, load_senders, parse_senders
from campaigns.content.templates import TemplateStore
from campaigns.engine.deploy import deploy
from campaigns.exceptions import ConfigError, JourneyError
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import Account, Contact
from campaigns.tracking.tokens import Tokens
from tests.kit import ROOT, START, TEST_BASE_URL, TEST_SECRET

SHIPPED = ROOT / "templates" / "sender.yaml"

JOURNEY = textwrap.dedent(
    """\
    journey: renewal_check
    name: Renewal check
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: invite
        email:
          template: webinar_invite
          subject:
            en: "Join us, {{ contact.name }}"
            ja: "{{ contact.name }}様、ウェビナーのご案内"
    """
)


def _renderer(senders, signer=None) -> Renderer:
    return Renderer(
        TemplateStore(ROOT / "templates"),
        Tokens(TEST_SECRET, TEST_BASE_URL),
        Sender("cs@example.com"),
        domain="example.com",
        senders=senders,
        signer=signer,
    )


def _header(message, name: str) -> str:
    return str(make_header(decode_header(str(message[name]))))


def _contacts(db, *, owner: str | None) -> None:
    with db.session() as s, s.begin():
        high = Account(
            external_id="HIGH",
            name="株式会社ハイタッチ",
            arr=Decimal(3_000_000),
            owner_email=owner,
            renewal_date=date(2027, 3, 31),
        )
        s.add(high)
        s.flush()
        s.add(
            Contact(
                account_id=high.id,
                email="taro@example.co.jp",
                name="山田 太郎",
                locale="ja",
                time_zone="Asia/Tokyo",
            )
        )
        s.add(
            Contact(
                account_id=high.id,
                email="pat@example.com",
                name="Pat Lee",
                locale="en",
                time_zone="Asia/Tokyo",
            )
        )


def _send(db, smtp_sink, build_engine) -> dict[str, email.message.EmailMessage]:
    with db.session() as s, s.begin():
        deploy(s, parse_journey(JOURNEY, "renewal_check.yaml"), JOURNEY, "renewal_check.yaml")
    engine = build_engine(transport=smtp_sink, clock=FakeClock(START))
    engine.tick()
    return {m["To"].addresses[0].addr_spec: m for m in smtp_sink.parsed()}


# -- the headers, end to end ------------------------------------------------------------


def test_reply_to_is_the_account_owner_for_a_high_touch_account(db, smtp_sink, build_engine):
    _contacts(db, owner="csm.sato@example.com")
    sent = _send(db, smtp_sink, build_engine)
    assert set(sent) == {"taro@example.co.jp", "pat@example.com"}
    for message in sent.values():
        assert message["Reply-To"].addresses[0].addr_spec == "csm.sato@example.com"
        assert message["From"].addresses[0].addr_spec == "cs@example.com"  # MAIL_FROM's


def test_reply_to_falls_back_to_the_brands_address_without_an_owner(db, smtp_sink, build_engine):
    _contacts(db, owner=None)
    sent = _send(db, smtp_sink, build_engine)
    assert sent["pat@example.com"]["Reply-To"].addresses[0].addr_spec == "support@example.com"


def test_list_id_feedback_id_and_both_list_unsubscribe_uris(db, smtp_sink, build_engine):
    _contacts(db, owner="csm.sato@example.com")
    message = _send(db, smtp_sink, build_engine)["taro@example.co.jp"]
    assert str(message["List-Id"]) == "Example Cloud <customers.example.com>"
    assert str(message["Feedback-ID"]) == "renewal_check:invite:default:example-cs"
    uris = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    assert len(uris) == 2
    mailto, https = uris
    assert https.startswith("https://cs.example.com/t/u/")
    token = https.rsplit("/", 1)[1]
    assert mailto == f"mailto:unsubscribe+{token}@example.com?subject=unsubscribe"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_japanese_marketing_email_carries_all_four_legal_items(db, smtp_sink, build_engine):
    _contacts(db, owner="csm.sato@example.com")
    message = _send(db, smtp_sink, build_engine)["taro@example.co.jp"]
    assert _header(message, "Subject") == "山田 太郎様、ウェビナーのご案内"
    text = message.get_body(("plain",)).get_content()
    html = footer.html_text(message.get_body(("html",)).get_content())
    token = re.findall(r"<https://[^>]+/t/u/([^>]+)>", str(message["List-Unsubscribe"]))[0]
    for part in (text, html):
        assert "Example株式会社" in part  # the sender's name
        assert "〒100-0005 東京都千代田区丸の内1-2-3" in part  # the postal address
        assert "いつでも配信を停止できます" in part  # the refusal statement
        assert "support@example.com" in part and "03-1234-5678" in part  # inquiries
    # ...with the means: the unsubscribe link and the unsubscribe address.
    assert f"https://cs.example.com/t/u/{token}" in text
    assert f"unsubscribe+{token}@example.com" in text
    raw_html = message.get_body(("html",)).get_content()
    assert f'href="https://cs.example.com/t/u/{token}"' in raw_html
    assert f"mailto:unsubscribe+{token}@example.com?subject=unsubscribe" in raw_html


def test_the_english_footer_names_the_company_in_english(db, smtp_sink, build_engine):
    _contacts(db, owner=None)
    text = _send(db, smtp_sink, build_engine)["pat@example.com"].get_body(("plain",))
    content = text.get_content()
    assert "Example Inc." in content and "1-2-3 Marunouchi" in content
    assert "Example株式会社" not in content


# -- brands -------------------------------------------------------------------------------


BRANDS = textwrap.dedent(
    """\
    default:
      name: Example株式会社
      postal_address: 〒100-0005 東京都千代田区丸の内1-2-3
      inquiry: support@example.com
      refusal: 配信停止は下記から。
    acme:
      name: Acme合同会社
      from: {name: Acme サポート, address: hello@acme.example}
      reply_to: owner
      postal_address: 〒530-0001 大阪府大阪市北区梅田1-1-1
      inquiry: {phone: 06-0000-0000}
      refusal: 配信停止は下記から。
      list_id: news.acme.example
      locales:
        en: {name: Acme LLC, from: {name: Acme Support, address: hello@acme.example}}
    """
)


def test_a_brand_has_its_own_from_reply_to_list_id_and_feedback_id(tmp_path):
    renderer = _renderer(parse_senders(BRANDS, "sender.yaml"))
    mail = renderer.render(
        message=9,
        message_id=None,
        to="taro@example.co.jp",
        to_name="山田 太郎",
        template="onboarding_tips",
        locale="ja",
        subject="ヒント",
        preheader=None,
        context={"contact": {"name": "山田"}, "account": {"name": "株式会社サンプル"}},
        now=START,
        origin=Origin(brand="acme", owner_email="owner@acme.example", journey="j", step="s"),
    )
    message = email.message_from_bytes(mail.raw, policy=policy.default)
    assert mail.mail_from == "hello@acme.example"
    assert message["From"].addresses[0].display_name == "Acme サポート"
    assert message["Reply-To"].addresses[0].addr_spec == "owner@acme.example"
    assert str(message["List-Id"]) == "Acme合同会社 <news.acme.example>"
    assert str(message["Feedback-ID"]) == "j:s:acme:acme.example"
    assert "Acme合同会社" in message.get_body(("plain",)).get_content()
    assert "unsubscribe+" in str(message["List-Unsubscribe"])
    assert "@acme.example?subject=unsubscribe" in str(message["List-Unsubscribe"])


def test_owner_reply_to_without_an_owner_or_fallback_gives_no_reply_to():
    identity = parse_senders(BRANDS).identity("acme", "ja")
    assert identity.reply_to == OWNER
    assert identity.sender(Sender("cs@example.com"), None).reply_to is None
    assert identity.sender(Sender("cs@example.com"), "not an address").reply_to is None
    assert identity.sender(Sender("cs@example.com"), "o@x.example").reply_to == "o@x.example"


def test_the_locale_override_falls_back_to_the_language_and_then_the_brand():
    senders = parse_senders(BRANDS)
    assert senders.identity("acme", "en-GB").name == "Acme LLC"
    assert senders.identity("acme", "de").name == "Acme合同会社"
    assert senders.identity(None, "ja").name == "Example株式会社"


def test_a_journey_naming_an_unknown_brand_is_refused_at_its_place():
    text = JOURNEY.replace("steps:", "brand: acmee\nsteps:")
    with pytest.raises(JourneyError) as caught:
        parse_journey(text, "j.yaml", brands=("default", "acme"))
    (problem,) = caught.value.problems
    assert str(problem) == "j.yaml:5:8: unknown brand 'acmee' (did you mean 'acme'?)"
    assert parse_journey(text.replace("acmee", "acme"), brands=("acme",)).brand == "acme"


# -- sender.yaml errors -------------------------------------------------------------------


def test_the_shipped_sender_file_loads_with_a_default_brand():
    senders = load_senders(SHIPPED)
    assert "default" in senders.names
    ja = senders.identity(None, "ja")
    assert ja.name and ja.postal_address and ja.refusal and ja.inquiry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme: {name: x}\n", "sender.yaml:1:1: there is no 'default' brand"),
        (
            "default:\n  nmae: Example\n",
            "sender.yaml:2:3: unknown key 'nmae' in brand 'default' (did you mean 'name'?)",
        ),
        (
            'default:\n  name: "Example\\r\\nBcc: x@evil.example"\n',
            "sender.yaml:2:9: 'name' contains the control character '\\r'",
        ),
        (
            "default:\n  from: {address: not-an-address}\n",
            "sender.yaml:2:19: 'address': not an email address: 'not-an-address'",
        ),
        ("default:\n  reply_to: [a]\n", "sender.yaml:2:13: 'reply_to' must be text, not a list"),
        ("default:\n  list_id: 'a b'\n", "sender.yaml:2:12: 'list_id': not a domain name"),
        ("default:\n  sender_id: 'a:b'\n", "sender.yaml:2:14: bad sender_id 'a:b'"),
        ("default:\n  locales: {EN!: {}}\n", "sender.yaml:2:13: bad locale 'EN!'"),
        ("- default\n", "sender.yaml:1:1: sender.yaml is a mapping of brands"),
        ("default:\n\tname: x\n", "sender.yaml:2:1: YAML syntax error"),
    ],
)
def test_sender_file_problems_name_their_line_and_column(text, expected):
    with pytest.raises(JourneyError) as caught:
        parse_senders(text, "sender.yaml")
    assert any(str(p).startswith(expected) for p in caught.value.problems), caught.value


def test_an_alias_bomb_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    with pytest.raises(JourneyError) as caught:
        parse_senders("default: {name: x}\n" + bomb, "sender.yaml")
    (problem,) = caught.value.problems
    assert str(problem).startswith("sender.yaml:2:4: YAML anchor '&a' is not allowed")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(
            lambda key, value: f"default:\n  {key}: {value}\n",
            st.sampled_from(["name", "from", "inquiry", "legal", "reply_to", "list_id", "x"]),
            st.text(max_size=40),
        ),
    )
)
def test_any_sender_file_gives_brands_or_problems_with_a_place(text):
    try:
        parse_senders(text, "sender.yaml")
    except JourneyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert re.fullmatch(r"sender\.yaml:\d+:\d+: .+", str(problem).split("\n")[0])
            assert "\n" not in problem.message and "\r" not in problem.message


# -- CR and LF in header values -----------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["unsubscribe_url", "unsubscribe_mailto", "list_id", "feedback_id", "headers"]
)
def test_cr_or_lf_in_any_header_value_is_refused(field):
    values: dict[str, object] = {
        "unsubscribe_url": "https://cs.example.com/t/u/x",
        "unsubscribe_mailto": "mailto:unsubscribe+x@example.com",
        "list_id": "<customers.example.com>",
        "feedback_id": "a:b:c:d",
        "headers": (),
    }
    bad = "x\r\nBcc: victim@example.org"
    values[field] = (bad,) if field == "headers" else bad
    with pytest.raises(ValueError, match="CR or LF"):
        mime.assemble(
            "From: cs@example.com",
            message=1,
            message_id="<m1.a@example.com>",
            to="taro@example.co.jp",
            to_name=None,
            subject="s",
            html="<p>h</p>",
            text="t",
            now=START,
            **values,  # type: ignore[arg-type]
        )


def test_a_brand_name_with_a_newline_cannot_reach_a_header():
    with pytest.raises(ValueError, match="List-Id"):
        mime.list_id_field("x", "bad\r\nBcc.example")
    assert "\r\n" not in mime.list_id_field("Example\r\nBcc: x", "customers.example.com").replace(
        "\r\n ", " "
    )


# -- DKIM -----------------------------------------------------------------------------------


def _rsa_key(tmp_path: Path) -> tuple[Path, bytes]:
    """A fresh RSA-2048 key pair in ``tmp_path`` (made by the openssl command, as dknewkey
    does): the PEM file and the DNS record."""
    path = tmp_path / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(path), "2048"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _ed25519_key(tmp_path: Path) -> tuple[Path, bytes]:
    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    path = tmp_path / "dkim.ed25519"
    path.write_bytes(base64.b64encode(bytes(key)) + b"\n")
    return path, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key))


def _dns(record: bytes, name: str = "mail2026._domainkey.example.com."):
    """Stands in for DNS (dkim.verify's dnsfunc): the one TXT record the test published."""

    def lookup(qname, timeout=5):
        wanted = qname.decode() if isinstance(qname, bytes) else qname
        return record if wanted == name else None

    return lookup


@pytest.mark.parametrize("make_key", [_rsa_key, _ed25519_key], ids=["rsa", "ed25519"])
def test_a_dkim_signed_message_sent_through_smtp_verifies(tmp_path, smtp_sink, make_key):
    path, record = make_key(tmp_path)
    cfg = config.load(
        {
            "DKIM_PRIVATE_KEY_FILE": str(path),
            "DKIM_SELECTOR": "mail2026",
            "DKIM_DOMAIN": "example.com",
        }
    )
    assert cfg.dkim is not None
    renderer = _renderer(load_senders(SHIPPED), Signer(cfg.dkim))
    mail = renderer.render(
        message=3,
        message_id=None,
        to="taro@example.co.jp",
        to_name="山田 太郎",
        template="webinar_invite",
        locale="ja",
        subject="ウェビナーのご案内",
        preheader=None,
        context={"contact": {"name": "山田"}, "account": {"name": "株式会社サンプル"}},
        now=START,
        origin=Origin(owner_email="csm@example.com", journey="j", step="s"),
    )
    transport = transport_from_url(smtp_sink.url)
    try:
        push_mail(transport, mail)
    finally:
        transport.close()
    (_, _, received) = smtp_sink.messages[0]
    assert dkim.verify(received, dnsfunc=_dns(record))
    message = email.message_from_bytes(received, policy=policy.default)
    signed = re.search(r"h=([^;]+)", str(message["DKIM-Signature"]).replace(" ", ""))
    assert signed is not None
    covered = set(signed.group(1).lower().split(":"))
    assert {"from", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= covered
    assert {"to", "date", "message-id", "reply-to", "list-id", "feedback-id"} <= covered
    # A changed subject no longer verifies.
    tampered = received.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=_dns(record))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DKIM_SELECTOR": "s"}, "DKIM_PRIVATE_KEY_FILE: not set"),
        (
            {"DKIM_PRIVATE_KEY_FILE": "/nonexistent/key.pem", "DKIM_SELECTOR": "s"},
            "DKIM_DOMAIN: not set",
        ),
        (
            {
                "DKIM_PRIVATE_KEY_FILE": "/nonexistent/key.pem",
                "DKIM_SELECTOR": "s",
                "DKIM_DOMAIN": "example.com",
            },
            "DKIM_PRIVATE_KEY_FILE: cannot read '/nonexistent/key.pem'",
        ),
        (
            {"DKIM_PRIVATE_KEY_FILE": "KEY", "DKIM_SELECTOR": "a b", "DKIM_DOMAIN": "example.com"},
            "DKIM_SELECTOR: 'a b' is not a selector",
        ),
        (
            {"DKIM_PRIVATE_KEY_FILE": "KEY", "DKIM_SELECTOR": "s", "DKIM_DOMAIN": "exa mple.com"},
            "DKIM_DOMAIN: 'exa mple.com' is not a domain name",
        ),
        (
            {"DKIM_PRIVATE_KEY_FILE": "GARBAGE", "DKIM_SELECTOR": "s", "DKIM_DOMAIN": "x.com"},
            "is not an RSA or Ed25519 private key",
        ),
    ],
)
def test_dkim_settings_are_checked_at_start_in_one_line(tmp_path, env, message):
    key, _ = _rsa_key(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    paths = {"KEY": str(key), "GARBAGE": str(garbage)}
    env = {k: paths.get(v, v) for k, v in env.items()}
    with pytest.raises(ConfigError) as caught:
        config.load(env)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_no_dkim_settings_means_no_signature():
    assert config.load({}).dkim is None


def test_the_composition_root_signs_and_sends_as_the_sender_file_says(db, tmp_path):
    from campaigns.services import build

    path, record = _rsa_key(tmp_path)
    cfg = config.load(
        {
            "DKIM_PRIVATE_KEY_FILE": str(path),
            "DKIM_SELECTOR": "mail2026",
            "DKIM_DOMAIN": "example.com",
            "CAMPAIGNS_TEMPLATES": str(ROOT / "templates"),
            "CAMPAIGNS_JOURNEYS": str(ROOT / "journeys"),
        }
    )
    services = build(cfg, database_url=db.url)
    try:
        renderer = services.renderer
        assert renderer.signer is not None and "default" in renderer.senders.names
        mail = renderer.render(
            message=5,
            message_id=None,
            to="pat@example.com",
            to_name="Pat",
            template="onboarding_tips",
            locale="en",
            subject="Tips",
            preheader=None,
            context={"contact": {"name": "Pat"}, "account": {"name": "Acme"}},
            now=START,
        )
        assert mail.raw.startswith(b"DKIM-Signature: ")
        assert dkim.verify(mail.raw, dnsfunc=_dns(record))
    finally:
        services.close()


def test_a_bad_dkim_key_stops_a_command_in_one_line_with_exit_2(tmp_path):
    import os
    import sys

    key = tmp_path / "not-a-key.pem"
    key.write_text("hello\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DKIM_", "DATABASE_"))}
    env.update(
        DKIM_PRIVATE_KEY_FILE=str(key),
        DKIM_SELECTOR="mail2026",
        DKIM_DOMAIN="example.com",
        CAMPAIGNS_TEMPLATES=str(ROOT / "templates"),
        CAMPAIGNS_JOURNEYS=str(ROOT / "journeys"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "campaigns", "validate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"campaigns: DKIM_PRIVATE_KEY_FILE: '{key}' is not an RSA or Ed25519 private key (PEM, "
        "or the base64 Ed25519 key dknewkey writes)"
    ]
