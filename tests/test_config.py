"""Configuration from the environment: defaults, normalisation, and clear errors for garbage."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import config
from campaigns import services as runtime
from campaigns.content.render import Renderer
from campaigns.content.templates import TemplateStore
from campaigns.exceptions import ConfigError
from campaigns.tracking.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_embedded_ones():
    cfg = config.load({})
    assert cfg.database_url == "sqlite:///campaigns.db"
    assert cfg.redis_url is None
    assert cfg.mail_url.startswith("file://")
    assert cfg.secret_is_ephemeral and len(cfg.secret_key) >= 32
    assert str(cfg.segments_file) == "journeys/segments.yaml"
    assert cfg.send_batch == 100
    assert config.load({"SEND_BATCH": " 1 "}).send_batch == 1
    assert config.load({"API_KEYS": " key-one-0123456789abc, key-two-0123456789abc "}).api_keys == (
        "key-one-0123456789abc",
        "key-two-0123456789abc",
    )
    assert config.load({"TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    assert cfg.global_control_percent == 0
    assert config.load({"GLOBAL_CONTROL_PERCENT": " 2.5% "}).global_control_percent == 2.5
    assert config.load({"GLOBAL_CONTROL_PERCENT": "50"}).global_control_percent == 50


def test_postgres_urls_get_the_psycopg_driver():
    assert (
        config.load({"DATABASE_URL": "postgres://u@h/db"}).database_url
        == "postgresql+psycopg://u@h/db"
    )
    assert (
        config.load({"DATABASE_URL": "postgresql://u@h/db"}).database_url
        == "postgresql+psycopg://u@h/db"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: unsupported scheme 'mysql'"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a URL starting with redis://"),
        ({"MAIL_URL": "smtp:/x"}, "MAIL_URL: no host"),
        ({"MAIL_URL": "smtp://h:99999999"}, "MAIL_URL: bad port"),
        ({"MAIL_URL": "pigeon://x"}, "MAIL_URL: expected a URL"),
        ({"BASE_URL": "example.com"}, "BASE_URL: expected a URL starting with http://"),
        ({"SECRET_KEY": "abc"}, "SECRET_KEY: too short"),
        ({"API_KEYS": "short"}, "API_KEYS: each key must be 16"),
        ({"API_KEYS": "good-key-0123456789,bad key with spaces!"}, "API_KEYS: each key must be 16"),
        ({"TRUSTED_PROXIES": "many"}, "TRUSTED_PROXIES: 'many' is not a number of proxies"),
        ({"SEND_BATCH": "0"}, "SEND_BATCH: '0' is not a whole number from 1 to 1000"),
        ({"SEND_BATCH": "1e3"}, "SEND_BATCH: '1e3' is not a whole number"),
        ({"SEND_BATCH": "１０"}, "SEND_BATCH: '１０' is not a whole number"),
        ({"GLOBAL_CONTROL_PERCENT": "60"}, "GLOBAL_CONTROL_PERCENT: '60' is not a percentage"),
        ({"GLOBAL_CONTROL_PERCENT": "-1"}, "GLOBAL_CONTROL_PERCENT: '-1' is not a percentage"),
        ({"GLOBAL_CONTROL_PERCENT": "0.001"}, "GLOBAL_CONTROL_PERCENT: '0.001' is not a"),
        ({"GLOBAL_CONTROL_PERCENT": "five"}, "GLOBAL_CONTROL_PERCENT: 'five' is not a"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    if message is None:
        config.load(env)
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config.load(env)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "DATABASE_URL",
                "REDIS_URL",
                "MAIL_URL",
                "BASE_URL",
                "SECRET_KEY",
                "MAIL_FROM",
                "SEND_BATCH",
                "API_KEYS",
                "TRUSTED_PROXIES",
                "GLOBAL_CONTROL_PERCENT",
            ]
        ),
        st.text(max_size=40),
    )
)
def test_any_environment_gives_a_config_or_a_config_error(env):
    try:
        cfg = config.load(env)
    except ConfigError as exc:
        assert str(exc).split(":")[0] in env
    else:
        assert cfg.database_url and cfg.base_url


# -- MAIL_FROM -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address", "name"),
    [
        ("Customer Success <cs@example.com>", "cs@example.com", "Customer Success"),
        ("カスタマーサクセス <cs@example.co.jp>", "cs@example.co.jp", "カスタマーサクセス"),
        ("=?utf-8?b?44Kr44K544K/44Oe44O8?= <cs@example.jp>", "cs@example.jp", "カスタマー"),
        ("cs@example.com", "cs@example.com", None),
        ("  <cs@example.com>  ", "cs@example.com", None),
        ('"Doe, Jane" <jane@example.org>', "jane@example.org", "Doe, Jane"),
        ("Acme Inc. <cs@acme.com>", "cs@acme.com", "Acme Inc."),
        ("first.last+cs@mail.example.com", "first.last+cs@mail.example.com", None),
        ("Support <cs@例え.jp>", "cs@xn--r8jz45g.jp", "Support"),
        ("Dev <cs@localhost>", "cs@localhost", "Dev"),
    ],
)
def test_mail_from_is_parsed_into_name_and_address(value, address, name):
    assert config.load({"MAIL_FROM": value}).mail_from == config.Mailbox(address, name)


def test_mail_from_defaults_to_the_embedded_sender():
    assert config.load({}).mail_from == config.Mailbox("cs@example.com", "Customer Success")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Customer \rBcc: v@x.org <cs@example.com>", r"contains the control character '\\r'"),
        ("cs@example.com\nBcc: v@x.org", r"contains the control character '\\n'"),
        ("cs@example.com\r\n", r"contains the control character '\\r'"),
        ("Customer\x00 <cs@example.com>", r"contains the control character '\\x00'"),
        ("Customer\x85 <cs@example.com>", r"contains the control character '\\x85'"),
        ("Customer\u2028Success <cs@example.com>", r"contains the control character '\\u2028'"),
        ("\u202emoc.elpmaxe <cs@example.com>", r"contains the control character '\\u202e'"),
        (
            "=?utf-8?q?x=0D=0ABcc=3A_v@x.org?= <cs@example.com>",
            "not an address",
        ),  # CR LF in an encoded word
        ("=?utf-8?q?x=07?= <cs@example.com>", "not an address"),
        ("=?utf-8?q?x=C2=85?= <cs@example.com>", "the name contains the control character"),
        ("@", "not an address"),
        ("a@", "not an address"),
        ("@b", "not an address"),
        ("a@b", "'b' is not a domain name"),
        ("a@b.", "not an address"),
        ("a@[127.0.0.1]", "is not a domain name"),
        ("a@192.168.0.1", "'192.168.0.1' is not a domain name"),
        ("a@-x.example.com", "is not a domain name"),
        ("a@xn--zz.com", "is not a domain name"),
        ("a@exa_mple.com", "is not a domain name"),
        ('"a b"@example.com', "no usable local part"),
        ("ü@example.com", "not an address"),  # SMTPUTF8 is not used
        ("a.@example.com", "not an address"),
        ("a@@example.com", "not an address"),
        ("<@route.example:a@example.com>", "not an address"),
        ("no address here", "not an address"),
        ("A <a@example.com>, B <b@example.com>", "one sender only"),
        ("a@example.com, b@example.com", "one sender only"),
        ("team: a@example.com;", "one sender only"),
        ("x" * 999 + "@example.com", "longer than 998 characters"),
    ],
)
def test_mail_from_that_is_not_exactly_one_usable_address_is_refused(value, message):
    with pytest.raises(ConfigError, match="^MAIL_FROM: .*" + message) as caught:
        config.load({"MAIL_FROM": value})
    assert len(str(caught.value).splitlines()) == 1


def test_the_header_injection_no_longer_makes_anyone_the_sender():
    """The reviewer's case: parseaddr read this as v@x.org, so the From (and the envelope)
    became the attacker's; it is now refused before anything is sent."""
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        config.load({"MAIL_FROM": "Customer \rBcc: v@x.org <cs@example.com>"})


# -- SECRET_KEY ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (" " * 20, "only whitespace"),
        ("\t\n  \r\n", "only whitespace"),
        (" track-secret-0123456789", "starts or ends with whitespace"),
        ("track-secret-0123456789\n", "starts or ends with whitespace"),
        ("track-secret\x00-0123456789", "contains control characters"),
        ("abc", r"too short \(3 characters\)"),
        ("abcdefghijklmno", r"too short \(15 characters\)"),
        ("a" * 40, "only 1 different characters"),
        ("12" * 16, "only 2 different characters"),
        ("abcdefg" * 3, "only 7 different characters"),
    ],
)
def test_weak_secret_keys_are_refused(value, message):
    with pytest.raises(ConfigError, match="^SECRET_KEY: " + message):
        config.load({"SECRET_KEY": value})


def test_a_secret_key_of_16_characters_with_8_different_ones_is_enough():
    cfg = config.load({"SECRET_KEY": "abcdefgh" * 2})
    assert cfg.secret_key == "abcdefgh" * 2 and not cfg.secret_is_ephemeral
    assert (
        config.load({"SECRET_KEY": "パスワード-0123456789"}).secret_key == "パスワード-0123456789"
    )


def test_a_mapping_without_secret_key_gets_a_random_one_and_writes_no_file():
    first, second = config.load({}), config.load({"SECRET_KEY": ""})
    assert first.secret_is_ephemeral and second.secret_is_ephemeral
    assert first.secret_key != second.secret_key and len(set(first.secret_key)) >= 8


_PRINT_SECRET = "from campaigns import config; print(config.load().secret_key)"


def _secret_of_a_process(env: dict[str, str]) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "CAMPAIGNS_INSTANCE")}
    return subprocess.Popen(
        [sys.executable, "-c", _PRINT_SECRET],
        cwd=ROOT,
        env={**environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_started_together_without_secret_key_agree_on_the_instance_secret(tmp_path):
    instance = tmp_path / "instance"
    started = [_secret_of_a_process({"CAMPAIGNS_INSTANCE": str(instance)}) for _ in range(4)]
    keys = set()
    for process in started:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        keys.add(out.strip())
    assert len(keys) == 1 and len(keys.pop()) >= 32
    secret = instance / config.SECRET_FILE
    assert secret.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in instance.iterdir()] == [config.SECRET_FILE]  # no draft left behind
    later = _secret_of_a_process({"CAMPAIGNS_INSTANCE": str(instance)}).communicate(timeout=60)
    assert later[0].strip() == secret.read_text().strip()


def test_the_instance_folder_follows_the_sqlite_file_and_an_explicit_secret_key_wins(tmp_path):
    db = tmp_path / "project" / "campaigns.db"
    out, _ = _secret_of_a_process({"DATABASE_URL": f"sqlite:///{db}"}).communicate(timeout=60)
    assert out.strip() == (tmp_path / "project" / "instance" / "secret_key").read_text().strip()
    cfg = config.load({"CAMPAIGNS_INSTANCE": str(tmp_path / "elsewhere")})
    assert cfg.instance_dir == tmp_path / "elsewhere" and not cfg.secret_is_ephemeral
    assert cfg.secret_key == (tmp_path / "elsewhere" / "secret_key").read_text().strip()
    given = config.load(
        {"CAMPAIGNS_INSTANCE": str(tmp_path / "third"), "SECRET_KEY": "abcdefgh" * 2}
    )
    assert given.secret_key == "abcdefgh" * 2 and not (tmp_path / "third").exists()
    with pytest.raises(ConfigError, match=r"^SECRET_KEY: too short"):
        config.load({"CAMPAIGNS_INSTANCE": str(tmp_path / "third"), "SECRET_KEY": "short"})
    assert config.instance_folder({}, "postgresql+psycopg://u@h/db", tmp_path) == (
        tmp_path / "instance"
    )


def test_a_damaged_instance_secret_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "secret_key").write_text("aaaa\n")
    with pytest.raises(ConfigError, match=r"secret_key: too short \(4 characters\)"):
        config.load({"CAMPAIGNS_INSTANCE": str(tmp_path)})


# -- DATABASE_URL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("postgresql://", "no host in 'postgresql://'"),
        ("postgres://", "no host"),
        ("postgresql:///campaigns", "no host"),
        ("postgresql://@/campaigns", "no host"),
        ("postgresql://db.internal", "no database name"),
        ("postgresql://u@db.internal/", "no database name"),
        ("postgresql://u@db.internal:0/campaigns", "port 0 out of range"),
        ("postgresql://u@db.internal:99999/campaigns", "port 99999 out of range"),
        ("postgresql://u@db.internal:x/campaigns", "cannot parse"),
        ("postgresql:", "cannot parse"),
        ("postgresql:/db", "cannot parse"),
        ("postgresql://u@h/db\x00", r"contains the control character '\\x00'"),
        ("postgresql://u@h/db\r\n", r"contains the control character '\\r'"),
        ("sqlite://", "an in-memory SQLite database is not shared"),
        ("sqlite:///:memory:", "an in-memory SQLite database"),
        ("sqlite:///file:x?mode=memory&uri=true", "an in-memory SQLite database"),
        ("sqlite://campaigns.db", "SQLite takes a file, not a host"),
        ("sqlite:", "cannot parse"),
        ("mysql://root@localhost/x", "unsupported scheme 'mysql'"),
        ("campaigns.db", "unsupported scheme 'campaigns.db'"),
    ],
)
def test_database_urls_must_name_a_server_and_a_database_or_a_file(value, message):
    with pytest.raises(ConfigError, match="^DATABASE_URL: " + message):
        config.load({"DATABASE_URL": value})


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("sqlite:///campaigns.db", "sqlite:///campaigns.db"),
        ("sqlite:////var/lib/campaigns/campaigns.db", "sqlite:////var/lib/campaigns/campaigns.db"),
        (
            "postgresql://u:p@db.internal:5432/campaigns",
            "postgresql+psycopg://u:p@db.internal:5432/campaigns",
        ),
        (
            "postgresql:///campaigns?host=/var/run/postgresql",
            "postgresql+psycopg:///campaigns?host=/var/run/postgresql",
        ),
        ("postgresql+psycopg://u@[::1]/campaigns", "postgresql+psycopg://u@[::1]/campaigns"),
    ],
)
def test_good_database_urls_are_kept(value, normalised):
    assert config.load({"DATABASE_URL": value}).database_url == normalised


def test_a_database_password_never_shows_in_the_error():
    with pytest.raises(ConfigError) as caught:
        config.load({"DATABASE_URL": "postgresql://u:hunter2@db.internal:x/campaigns"})
    assert "hunter2" not in str(caught.value) and "u:***@db.internal" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        config.load(
            {"DATABASE_URL": "postgresql://u:hun/t@r2@db.internal:x/campaigns"}
        )  # pasted unescaped
    assert "hun" not in str(caught.value) and "r2" not in str(caught.value)


# -- REDIS_URL, BASE_URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("redis://", "expected a URL starting with redis://"),
        ("redis://h:abc/0", "Port could not be cast to integer"),
        ("redis://h:99999/0", "Port out of range"),
        ("redis://h:0/0", "port 0"),
        ("redis://h/x", "the database in 'redis://h/x' is not a number"),
        ("redis://h/0/1", "the database in 'redis://h/0/1' is not a number"),
        ("redis://h/0?db=x", "Invalid value for 'db'"),
        ("redis://h/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("unix://", "no socket path"),
        ("redis://h/0\n", r"contains the control character '\\n'"),
        ("127.0.0.1:6379", "expected a URL starting with redis://"),
        ("redis://[oops/0", r"not a URL \(Invalid IPv6 URL\)"),
    ],
)
def test_bad_redis_urls_are_refused_before_anything_connects(value, message):
    with pytest.raises(ConfigError, match="^REDIS_URL: " + message):
        config.load({"REDIS_URL": value})


@pytest.mark.parametrize(
    "value",
    [
        "redis://cache.internal:6390/0",
        "redis://:pw@cache.internal/3",
        "rediss://cache.internal:6380",
        "unix:///run/redis.sock?db=2",
        "redis://[2001:db8::1]:6390/0",
    ],
)
def test_good_redis_urls_are_kept(value):  # parsed only: nothing connects
    assert config.load({"REDIS_URL": value}).redis_url == value


def test_a_redis_password_never_shows_in_the_error():
    with pytest.raises(ConfigError) as caught:
        config.load({"REDIS_URL": "redis://:hunter2@cache.internal/x"})
    assert "hunter2" not in str(caught.value)


def test_a_url_that_urllib_cannot_split_is_one_line():
    with pytest.raises(ConfigError, match=r"^BASE_URL: not a URL"):
        config.load({"BASE_URL": "http://[::1"})


def test_a_base_url_with_a_line_break_is_refused():
    """The base URL goes into the List-Unsubscribe header; urlsplit drops CR and LF, so the
    scheme check alone passed "http://x\\r\\nBcc: v@x.org" on to every message."""
    with pytest.raises(ConfigError, match=r"^BASE_URL: contains the control character '\\r'"):
        config.load({"BASE_URL": "http://cs.example.com\r\nBcc: v@x.org"})


# -- garbage ---------------------------------------------------------------------------------

_PIECES = [
    "Customer",
    " ",
    "カスタマー",
    '"',
    "\\",
    ",",
    ";",
    ":",
    ".",
    "<",
    ">",
    "@",
    "(",
    ")",
    "[",
    "]",
    "=?utf-8?q?",
    "=?utf-8?b?",
    "?=",
    "=0D=0A",
    "\r",
    "\n",
    "\t",
    "\x00",
    "\u2028",
    "\u202e",
    "Bcc: v@x.org",
    "cs",
    "example.com",
    "例え.jp",
    "localhost",
    "xn--",
    "-",
    "_",
]
_DOMAINS = [
    "example.com",
    "example.co.jp",
    "例え.jp",
    "localhost",
    "b",
    "1.2.3.4",
    "x-.com",
    "mail.example.com",
]

mail_from_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(_PIECES), max_size=24).map("".join),
    st.builds(
        lambda name, local, domain: f"{name} <{local}@{domain}>",
        st.text(max_size=30),
        st.sampled_from(["cs", "a.b", "x+y", "ü", "a b"]),
        st.sampled_from(_DOMAINS),
    ),
    st.builds(
        lambda name, domain: f'"{name}" <cs@{domain}>',
        st.text(max_size=30),
        st.sampled_from(_DOMAINS),
    ),
)


def _fuzzed_url(prefixes):
    return st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda prefix, rest: prefix + rest, st.sampled_from(prefixes), st.text(max_size=40)
        ),
    )


@pytest.mark.parametrize(
    ("variable", "values"),
    [
        ("MAIL_FROM", mail_from_texts),
        ("SECRET_KEY", st.one_of(st.text(max_size=40), st.text(alphabet="ab \t\n", max_size=40))),
        (
            "DATABASE_URL",
            _fuzzed_url(
                [
                    "sqlite://",
                    "sqlite:///",
                    "postgresql://",
                    "postgres://u:p@",
                    "postgresql+psycopg://h/",
                    "sqlite:///file:",
                ]
            ),
        ),
        (
            "REDIS_URL",
            _fuzzed_url(
                ["redis://", "rediss://", "unix://", "redis://h:", "redis://h/", "redis://:p@h/0?"]
            ),
        ),
    ],
)
def test_arbitrary_text_gives_a_config_or_one_line_naming_the_variable(variable, values):
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(values)
    def check(value):
        try:
            config.load({variable: value})
        except ConfigError as exc:
            assert str(exc).startswith(f"{variable}: ")
            assert len(str(exc).splitlines()) == 1, str(exc)

    check()


@pytest.fixture(scope="module")
def renderer_for():
    store, tokens = (
        TemplateStore(ROOT / "templates"),
        Tokens("config-test-secret-0123456789", "https://t.example.com"),
    )
    return lambda cfg: Renderer(store, tokens, runtime.sender(cfg), domain="mail.example.com")


def _from_header(raw: bytes) -> list[bytes]:
    """The physical lines of the From header in ``raw``'s header block."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    lines, taken = [], False
    for line in head.split(b"\r\n"):
        if line.startswith(b"From:"):
            taken = True
        elif line[:1] not in (b" ", b"\t"):
            taken = False
        if taken:
            lines.append(line)
    return lines


def _assemble(renderer: Renderer) -> bytes:
    return renderer.assemble(
        message=1,
        message_id="<m1.test@mail.example.com>",
        to="taro@example.co.jp",
        to_name=None,
        subject="Hello",
        html="<p>Hello</p>",
        text="Hello",
        unsubscribe_url="https://t.example.com/t/u/x",
        now=datetime(2027, 1, 12, tzinfo=UTC),
    )


@settings(max_examples=300, deadline=None)
@given(mail_from_texts)
def test_an_accepted_mail_from_makes_exactly_one_from_header_without_line_breaks(
    renderer_for, value
):
    try:
        cfg = config.load({"MAIL_FROM": value})
    except ConfigError:
        return
    raw = _assemble(renderer_for(cfg))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    lines = _from_header(raw)
    assert lines and all(
        line[:1] in (b" ", b"\t") for line in lines[1:]
    )  # folded, never a new header
    message = email.message_from_bytes(raw, policy=policy.default)
    assert [name for name in message if name.lower() == "from"] == ["From"]
    assert set(message.keys()) == {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "X-Campaigns-Message",
        "MIME-Version",
        "Content-Type",
    }
    (sender,) = message["From"].addresses
    assert sender.addr_spec == cfg.mail_from.address
    # Python < 3.14 puts a space where two encoded words meet (gh-128110); mail clients do not.
    assert sender.display_name.replace(" ", "") == (cfg.mail_from.name or "").replace(" ", "")


def test_the_sent_email_carries_the_configured_japanese_sender(renderer_for):
    """The sending side end to end: MAIL_FROM → Config → runtime.sender → Renderer →
    OutgoingEmail, parsed back with the email package."""
    cfg = config.load({"MAIL_FROM": "カスタマーサクセス <cs@例え.jp>"})
    mail = renderer_for(cfg).render(
        message=7,
        message_id=None,
        to="taro@example.co.jp",
        to_name="山田 太郎",
        template="renewal_reminder",
        locale="ja",
        subject="ご契約更新のご案内",
        preheader=None,
        context={
            "contact": {"name": "山田 太郎"},
            "account": {"name": "株式会社サンプル"},
            "links": {},
        },
        now=datetime(2027, 1, 12, tzinfo=UTC),
    )
    assert mail.mail_from == "cs@xn--r8jz45g.jp"  # the SMTP envelope sender
    message = email.message_from_bytes(mail.raw, policy=policy.default)
    assert (
        len(message.get_all("From")) == 1 and message["Bcc"] is None and message["Sender"] is None
    )
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("カスタマーサクセス", "cs@xn--r8jz45g.jp")
    assert not message["From"].defects
    assert mail.raw.startswith(b"From: =?utf-8?b?")
