"""Email transports against a real SMTP server (aiosmtpd on loopback) and a real folder.

The server is scriptable: it counts connections, keeps what it accepts, and answers DATA or
MAIL with whatever a test needs (421, 451, 550, a dropped connection).
"""

from __future__ import annotations

import asyncio
import email
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from campaigns.channels.transports import (
    FileTransport,
    PermanentFailure,
    SMTPTransport,
    TemporaryFailure,
    transport_from_url,
)
from campaigns.content.mime import OutgoingEmail, Sender
from campaigns.content.render import Renderer
from campaigns.content.templates import TemplateStore
from campaigns.exceptions import ConfigError
from campaigns.tracking.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "ops@example.com", "p@ss:w/rd%&"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """An aiosmtpd handler that keeps messages and answers as scripted."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.connections = 0
        self.logins: list[tuple[bytes, bytes]] = []
        self.tls_seen: list[bool] = []
        self.data_replies: list[str] = []  # the next DATA replies; "drop" hangs up instead
        self.refuse: dict[str, str] = {}  # recipient -> RCPT reply
        self.per_connection: int | None = None  # MAIL beyond this many answers 421
        self.port = 0
        self._lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        session.sent = getattr(session, "sent", 0) + 1
        if self.per_connection is not None and session.sent > self.per_connection:
            return "421 4.7.0 Too many messages on this connection, reconnect"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if reply == "drop":
                server.transport.abort()  # hang up after the data, before any reply
                await asyncio.sleep(3600)  # cancelled when the connection is gone
            return reply
        with self._lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self.tls_seen.append(session.ssl is not None)
        return "250 2.0.0 Queued"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 235 or 535

    def parsed(self) -> list[Any]:
        return [email.message_from_bytes(raw, policy=policy.default) for _, _, raw in self.messages]


class CountingController(Controller):
    """Counts connections: aiosmtpd makes one SMTP protocol object per connection."""

    def factory(self) -> SMTP:
        self.handler.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)


def serve(relay: Relay, **kwargs: Any) -> tuple[CountingController, int]:
    port = free_port()
    kwargs.setdefault("decode_data", False)
    controller = CountingController(relay, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    relay.connections = 0  # the controller's own start-up probe is not ours
    return controller, port


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    controller, port = serve(relay, authenticator=relay.authenticate, auth_require_tls=False)
    relay.port = port
    yield relay
    controller.stop()


def transport_for(relay: Relay, **kwargs: Any) -> SMTPTransport:
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("local_hostname", "worker.test")
    return SMTPTransport("127.0.0.1", relay.port, **kwargs)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(
        TemplateStore(ROOT / "templates"),
        Tokens("transport-test-secret-0123456789", "https://t.example.com"),
        Sender("cs@example.com", "Example カスタマーサクセス"),
    )


def mail(renderer: Renderer, n: int, to: str | None = None) -> OutgoingEmail:
    return renderer.render(
        message=n,
        message_id=None,
        to=to or f"user{n}@example.co.jp",
        to_name="山田 太郎",
        template="onboarding_tips",
        locale="ja",
        subject=f"【第{n}回】活用のヒント",
        preheader=None,
        context={"contact": {"name": "山田 太郎"}, "account": {"name": "株式会社サンプル"}},
        now=datetime(2027, 1, 12, 1, 30, tzinfo=UTC),
    )


# -- SMTP ------------------------------------------------------------------------------------


def test_three_messages_go_over_one_connection(relay: Relay, renderer: Renderer) -> None:
    sent = [mail(renderer, n) for n in (1, 2, 3)]
    with transport_for(relay) as transport:
        for outgoing in sent:
            transport.send(outgoing)
        assert transport.connections == 1
    assert relay.connections == 1
    assert [(m[0], m[1]) for m in relay.messages] == [
        ("cs@example.com", [f"user{n}@example.co.jp"]) for n in (1, 2, 3)
    ]
    for n, outgoing, message in zip((1, 2, 3), sent, relay.parsed(), strict=True):
        assert message["Message-ID"] == outgoing.message_id
        assert str(message["Subject"]) == outgoing.subject
        assert message["From"].addresses[0].display_name == "Example カスタマーサクセス"
        body = message.get_body(("plain",))
        assert body is not None and "株式会社サンプル" in body.get_content()
        assert message.get_body(("html",)) is not None
        assert message["X-Campaigns-Message"] == str(n)


def test_421_is_temporary_and_the_next_send_reconnects(relay: Relay, renderer: Renderer) -> None:
    relay.data_replies = ["421 4.3.2 Service shutting down"]
    with transport_for(relay) as transport:
        with pytest.raises(TemporaryFailure) as failure:
            transport.send(mail(renderer, 1))
        assert failure.value.code == 421 and failure.value.stage == "data"
        transport.send(mail(renderer, 1))  # the retry, on a new connection
        assert transport.connections == 2
    assert len(relay.messages) == 1


def test_451_greylisting_is_temporary_and_keeps_the_connection(
    relay: Relay, renderer: Renderer
) -> None:
    relay.data_replies = ["451 4.7.1 Greylisted, please try again later"]
    with transport_for(relay) as transport:
        with pytest.raises(TemporaryFailure) as failure:
            transport.send(mail(renderer, 1))
        assert (failure.value.code, failure.value.enhanced) == (451, "4.7.1")
        transport.send(mail(renderer, 1))
    assert relay.connections == 1 and len(relay.messages) == 1


def test_unknown_recipient_550_is_a_permanent_failure_of_that_address(
    relay: Relay, renderer: Renderer
) -> None:
    relay.refuse["nobody@example.co.jp"] = "550 5.1.1 No such user here"
    with transport_for(relay) as transport:
        with pytest.raises(PermanentFailure) as failure:
            transport.send(mail(renderer, 1, to="nobody@example.co.jp"))
        assert (failure.value.code, failure.value.stage) == (550, "rcpt")
        assert failure.value.bad_address
        transport.send(mail(renderer, 2))  # the connection is still good for the next one
    assert relay.connections == 1 and len(relay.messages) == 1


def test_550_to_the_content_bounces_without_blaming_the_address(
    relay: Relay, renderer: Renderer
) -> None:
    relay.data_replies = ["550 5.7.1 Message rejected as spam"]
    with transport_for(relay) as transport, pytest.raises(PermanentFailure) as failure:
        transport.send(mail(renderer, 1))
    assert (failure.value.code, failure.value.stage) == (550, "data")
    assert not failure.value.bad_address


def test_greylisted_recipient_is_temporary(relay: Relay, renderer: Renderer) -> None:
    relay.refuse["later@example.co.jp"] = "450 4.2.0 Mailbox busy"
    with transport_for(relay) as transport, pytest.raises(TemporaryFailure) as failure:
        transport.send(mail(renderer, 1, to="later@example.co.jp"))
    assert (failure.value.code, failure.value.stage) == (450, "rcpt")


def test_connection_dropped_during_data_is_temporary_and_not_retried_silently(
    relay: Relay, renderer: Renderer
) -> None:
    relay.data_replies = ["drop"]
    with transport_for(relay) as transport:
        with pytest.raises(TemporaryFailure) as failure:
            transport.send(mail(renderer, 1))
        # The server may have taken it: the engine decides, under the same Message-ID.
        assert failure.value.stage == "data" and transport.connections == 1
        transport.send(mail(renderer, 1))
        assert transport.connections == 2
    assert len(relay.messages) == 1


def test_a_connection_the_server_closed_while_idle_is_reopened_transparently(
    renderer: Renderer,
) -> None:
    relay = Relay()
    controller, port = serve(relay, timeout=0.3)  # the server hangs up after 0.3 s idle
    try:
        with SMTPTransport("127.0.0.1", port, timeout=5, local_hostname="w") as transport:
            transport.send(mail(renderer, 1))
            threading.Event().wait(0.8)
            transport.send(mail(renderer, 2))  # no exception: reconnected once
            assert transport.connections == 2
    finally:
        controller.stop()
    assert relay.connections == 2 and len(relay.messages) == 2


def test_421_to_mail_on_a_reused_connection_reconnects_transparently(
    relay: Relay, renderer: Renderer
) -> None:
    relay.per_connection = 2  # like a relay that takes N messages per connection
    with transport_for(relay) as transport:
        for n in range(5):
            transport.send(mail(renderer, n))
        assert transport.connections == 3
    assert len(relay.messages) == 5 and relay.connections == 3


def test_connection_refused_is_temporary(renderer: Renderer) -> None:
    transport = SMTPTransport("127.0.0.1", free_port(), timeout=2, local_hostname="w")
    with pytest.raises(TemporaryFailure) as failure:
        transport.send(mail(renderer, 1))
    assert failure.value.stage == "connect" and failure.value.code is None
    transport.close()


def test_a_server_that_never_answers_times_out_as_temporary(renderer: Renderer) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        transport = SMTPTransport("127.0.0.1", port, timeout=0.3, local_hostname="w")
        with pytest.raises(TemporaryFailure, match="timed out"):
            transport.send(mail(renderer, 1))


def test_auth_with_percent_encoded_credentials_from_the_url(
    relay: Relay, renderer: Renderer
) -> None:
    url = f"smtp://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@127.0.0.1:{relay.port}"
    transport = transport_from_url(url + "?helo=worker.test&timeout=5")
    assert isinstance(transport, SMTPTransport)
    assert (transport.username, transport.password) == (USER, PASSWORD)
    with transport:
        transport.send(mail(renderer, 1))
        transport.send(mail(renderer, 2))
    assert relay.logins == [(USER.encode(), PASSWORD.encode())]  # once per connection
    assert len(relay.messages) == 2


def test_a_wrong_password_is_temporary_never_a_bounce(relay: Relay, renderer: Renderer) -> None:
    with (
        transport_for(relay, username=USER, password="wrong") as transport,
        pytest.raises(TemporaryFailure) as failure,
    ):
        transport.send(mail(renderer, 1))
    assert (failure.value.code, failure.value.stage) == (535, "connect")
    assert not relay.messages


def test_starttls_required_refuses_a_server_without_it(relay: Relay, renderer: Renderer) -> None:
    with (
        transport_for(relay, starttls="required", username=USER, password=PASSWORD) as transport,
        pytest.raises(TemporaryFailure, match="STARTTLS"),
    ):
        transport.send(mail(renderer, 1))
    assert not relay.logins and not relay.messages


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*certificate)
    client = ssl.create_default_context(cafile=str(certificate[0]))
    return server, client


def test_starttls_then_auth_when_the_server_offers_it(
    certificate: tuple[Path, Path], renderer: Renderer
) -> None:
    relay = Relay()
    server_tls, client_tls = _contexts(certificate)
    controller, port = serve(
        relay, tls_context=server_tls, require_starttls=True, authenticator=relay.authenticate
    )
    try:
        with SMTPTransport(
            "127.0.0.1", port, username=USER, password=PASSWORD, ssl_context=client_tls
        ) as transport:
            transport.send(mail(renderer, 1))
            transport.send(mail(renderer, 2))
    finally:
        controller.stop()
    assert relay.tls_seen == [True, True] and len(relay.logins) == 1


def test_smtps_speaks_tls_from_the_first_byte(
    certificate: tuple[Path, Path], renderer: Renderer
) -> None:
    relay = Relay()
    server_tls, client_tls = _contexts(certificate)
    controller, port = serve(relay, ssl_context=server_tls)
    try:
        with SMTPTransport(
            "127.0.0.1", port, implicit_tls=True, ssl_context=client_tls
        ) as transport:
            transport.send(mail(renderer, 1))
    finally:
        controller.stop()
    assert len(relay.messages) == 1 and relay.parsed()[0]["To"].addresses[0].username == "user1"


def test_an_untrusted_certificate_is_a_temporary_failure(
    certificate: tuple[Path, Path], renderer: Renderer
) -> None:
    relay = Relay()
    server_tls, _ = _contexts(certificate)
    controller, port = serve(relay, ssl_context=server_tls)
    try:
        with pytest.raises(TemporaryFailure, match="CERTIFICATE_VERIFY_FAILED"):
            SMTPTransport("127.0.0.1", port, implicit_tls=True, timeout=5).send(mail(renderer, 1))
    finally:
        controller.stop()
    assert not relay.messages


# -- the file outbox ---------------------------------------------------------------------------


def test_file_transport_writes_a_parseable_eml_once_per_message(
    tmp_path: Path, renderer: Renderer
) -> None:
    outbox = FileTransport(tmp_path / "outbox")
    first = mail(renderer, 1)
    outbox.send(first)
    outbox.send(first)  # a retry of the same message
    files = list((tmp_path / "outbox").iterdir())
    assert files == [outbox.path_for(first)]
    assert files[0].name == first.message_id.strip("<>") + ".eml"
    assert files[0].read_bytes() == first.raw
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["Message-ID"] == first.message_id
    assert str(message["Subject"]) == "【第1回】活用のヒント"
    outbox.send(mail(renderer, 2))
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    assert not list((tmp_path / "outbox").glob(".*"))  # no temporary files left behind


def test_file_names_stay_inside_the_outbox(tmp_path: Path, renderer: Renderer) -> None:
    outbox = FileTransport(tmp_path / "outbox")
    base = mail(renderer, 1)
    odd = [
        OutgoingEmail("<../../escape@x>", base.to, base.mail_from, "", base.raw, ()),
        OutgoingEmail("<a/b@x>", base.to, base.mail_from, "", base.raw, ()),
        OutgoingEmail("<a_b@x>", base.to, base.mail_from, "", base.raw, ()),
    ]
    paths = {outbox.path_for(m) for m in odd}
    assert len(paths) == 3
    for outgoing in odd:
        outbox.send(outgoing)
        assert outbox.path_for(outgoing).parent == tmp_path / "outbox"
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == sorted(p.name for p in paths)


def test_a_file_outbox_that_cannot_be_written_is_temporary(
    tmp_path: Path, renderer: Renderer
) -> None:
    outbox = FileTransport(tmp_path / "outbox")
    (tmp_path / "outbox").write_text("a file where the folder should be")
    with pytest.raises(TemporaryFailure):
        outbox.send(mail(renderer, 1))


def test_a_file_outbox_is_made_on_the_first_send_not_before(
    tmp_path: Path, renderer: Renderer
) -> None:
    """A dashboard page that could send a test builds a transport: nothing may appear then."""
    outbox = FileTransport(tmp_path / "deep" / "outbox")
    assert not (tmp_path / "deep").exists()
    outbox.send(mail(renderer, 1))
    assert len(list((tmp_path / "deep" / "outbox").glob("*.eml"))) == 1


def test_a_file_outbox_under_a_file_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the outbox"):
        transport_from_url(f"file://{tmp_path}/plain/outbox")


# -- MAIL_URL --------------------------------------------------------------------------------


def test_relative_file_urls_resolve_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    default = transport_from_url("file:///./outbox")
    assert isinstance(default, FileTransport) and default.directory == tmp_path / "outbox"
    other = transport_from_url("file://./mail/out%20box")
    assert isinstance(other, FileTransport) and other.directory == tmp_path / "mail" / "out box"
    absolute = transport_from_url(f"file://{tmp_path}/abs")
    assert isinstance(absolute, FileTransport) and absolute.directory == tmp_path / "abs"


def test_smtp_urls_are_parsed_into_settings() -> None:
    transport = transport_from_url(
        "smtp://me%40corp:s%3Acret@relay.example.com:2525?starttls=off&timeout=7.5&helo=w1"
    )
    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port) == ("relay.example.com", 2525)
    assert (transport.username, transport.password) == ("me@corp", "s:cret")
    assert (transport.starttls, transport.timeout, transport.local_hostname) == ("off", 7.5, "w1")
    secure = transport_from_url("smtps://relay.example.com")
    assert isinstance(secure, SMTPTransport)
    assert (secure.port, secure.implicit_tls, secure.username) == (465, True, None)
    plain = transport_from_url("smtp://relay.example.com")
    assert isinstance(plain, SMTPTransport) and plain.port == 25 and plain.starttls == "auto"


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example.com",
        "smtp://",
        "smtp://relay.example.com:99999",
        "smtp://relay.example.com?tls=yes",
        "smtp://relay.example.com?starttls=maybe",
        "smtp://relay.example.com?timeout=soon",
        "file://elsewhere.example.com/outbox",
        "file:///",
    ],
)
def test_bad_mail_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="MAIL_URL"):
        transport_from_url(url)
