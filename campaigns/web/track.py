"""What a recipient touches: the open pixel, click redirects, one-click answers, the
unsubscribe page and its RFC 8058 one-click POST, and the preference page.

Every URL carries a token signed for its purpose (:mod:`campaigns.tracking.tokens`); one that does
not verify records nothing and gets a plain 404. The pixel and clicks only append a hit to
the hit log (:mod:`campaigns.tracking.hits`): no database transaction on the request path, and the
hit is in Redis before the response leaves. A click goes only to a link stored on its own
message (no open redirect); the stored links are read once per message and cached.

Answers cannot be cast by a GET, because link scanners GET every link: the answer link
opens a page that posts the answer at once from the browser (one click for a person, as
before), with a button for browsers without JavaScript. Unsubscribing works the same way,
except for the one-click POST mail clients send on the person's behalf
(``List-Unsubscribe=One-Click``), which is honoured at once. The forms carry a signed form
token (CSRF); pages are in the contact's language (Japanese or English) and are sent with a
strict Content-Security-Policy and ``Referrer-Policy: no-referrer`` (tokens stay out of
other sites' logs).
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.urls import iri_to_uri

from campaigns import defaults
from campaigns.store import consent, outbox
from campaigns.store.enums import Channel, ConsentBasis, EventKind, OutboundType
from campaigns.store.models import Contact, Message
from campaigns.tracking.events import record_event
from campaigns.tracking.hits import Hit, HitLog
from campaigns.tracking.tokens import TRAP_LINK, Tokens, canonical
from campaigns.web.roles import PUBLIC, needs

bp = Blueprint("track", __name__, url_prefix="/t", template_folder="templates")

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
"""A transparent 1x1 GIF (43 bytes)."""

NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}

FORM_MAX_AGE = timedelta(days=7)
"""How long a page's form may be sent after the page was opened."""

CATEGORIES = ("marketing", "survey", "event")
"""Categories a contact can opt out of on the preference page (a step's ``category``)."""

PAUSES = (0, 30, 90)
"""Days a contact can pause marketing email for."""

MAX_COMMENT = 2_000

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "lang": "en",
        "sending": "Sending your answer…",
        "send": "Send my answer",
        "thanks": "Thank you for your answer",
        "your_answer": "Your answer: {value}",
        "rsvp_yes": "You are registered. See you there!",
        "rsvp_no": "Thank you for letting us know you cannot attend.",
        "comment_prompt": "Anything you would like to add? (optional)",
        "comment_send": "Send",
        "comment_thanks": "Thank you for your comment.",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop marketing email to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed": "You are unsubscribed. We will send no more marketing email to {email}.",
        "preferences_link": "Or choose which email you get",
        "preferences_title": "Email preferences",
        "categories": "Send me:",
        "marketing": "News and tips",
        "survey": "Surveys",
        "event": "Webinars and events",
        "pause": "Pause all of it for",
        "pause_0": "do not pause",
        "pause_30": "30 days",
        "pause_90": "90 days",
        "unsubscribe_all": "Unsubscribe from all marketing email",
        "consent_legend": "Your consent",
        "consent_version": "Wording version {version}",
        "save": "Save",
        "saved": "Your preferences are saved.",
        "invalid": "This link is not valid.",
        "expired": "This form has expired. Please open the link in the email again.",
    },
    "ja": {
        "lang": "ja",
        "sending": "回答を送信しています…",
        "send": "回答を送信する",
        "thanks": "ご回答ありがとうございました",
        "your_answer": "あなたの回答: {value}",
        "rsvp_yes": "参加登録が完了しました。当日お会いできるのを楽しみにしています。",
        "rsvp_no": "ご連絡ありがとうございます。またの機会にぜひご参加ください。",
        "comment_prompt": "ご意見・ご要望があればお聞かせください（任意）",
        "comment_send": "送信する",
        "comment_thanks": "コメントをお送りいただきありがとうございました。",
        "unsubscribe_title": "配信停止",
        "unsubscribe_question": "{email} へのお知らせメールを停止しますか？",
        "unsubscribe_button": "配信を停止する",
        "unsubscribed": "配信を停止しました。今後 {email} にお知らせメールはお送りしません。",
        "preferences_link": "受け取るメールを選ぶ",
        "preferences_title": "メール配信設定",
        "categories": "受け取るメール:",
        "marketing": "お知らせ・活用のヒント",
        "survey": "アンケート",
        "event": "ウェビナー・イベント",
        "pause": "すべて一時停止する期間",
        "pause_0": "停止しない",
        "pause_30": "30日間",
        "pause_90": "90日間",
        "unsubscribe_all": "お知らせメールをすべて停止する",
        "consent_legend": "メール受信への同意",
        "consent_version": "同意文言の版: {version}",
        "save": "保存する",
        "saved": "設定を保存しました。",
        "invalid": "このリンクは無効です。",
        "expired": "このフォームは有効期限が切れました。メールのリンクをもう一度開いてください。",
    },
}


# ---------------------------------------------------------------------------- services


class Tracking:
    """The blueprint's services, built once per app: tokens, form tokens, the hit log and a
    cache of each message's stored links."""

    def __init__(
        self, tokens: Tokens, secret: str, hits: HitLog, sessions: Any, link_cache: int = 100_000
    ) -> None:
        self.tokens = tokens
        self.forms = URLSafeTimedSerializer(secret, salt="campaigns.forms")
        self.hits = hits
        self.sessions = sessions
        self.links = lru_cache(maxsize=link_cache)(self._load_links)

    def _load_links(self, message_id: int) -> tuple[str, ...] | None:
        """A sent message's links never change, so they are read once per process."""
        with self.sessions() as session:
            links = session.scalar(select(Message.links).where(Message.id == message_id))
        return (
            None if links is None else tuple(iri_to_uri(link) for link in links)
        )  # ready for a Location header

    def form_token(self, message_id: int, form: str) -> str:
        return self.forms.dumps({"m": message_id, "f": form})

    def form_ok(self, message_id: int, form: str) -> bool:
        token = request.form.get("csrf", "")
        if not canonical(token):  # itsdangerous would take it padded or with a stray byte too
            return False
        try:
            data = self.forms.loads(token, max_age=int(FORM_MAX_AGE.total_seconds()))
        except (BadData, ValueError, TypeError):
            return False
        return isinstance(data, dict) and data.get("m") == message_id and data.get("f") == form


def tracking() -> Tracking:
    return current_app.extensions["campaigns.tracking"]


def _hit(kind: str, message: int, **extra: Any) -> None:
    tracking().hits.record(
        Hit(
            kind=kind,
            message=message,
            at=current_app.extensions["campaigns.clock"].now().timestamp(),
            method=request.method,
            user_agent=request.headers.get("User-Agent", "")[:512],
            ip=request.remote_addr or "",
            **extra,
        )
    )


def _payload(purpose: str, token: str, *fields: str) -> dict[str, Any]:
    """The verified payload with ``fields`` of the right types, or a plain 404."""
    payload = tracking().tokens.loads(purpose, token)
    if (
        payload is None
        or type(payload.get("m")) is not int
        or any(f not in payload for f in fields)
    ):
        abort(404)
    return payload


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Robots-Tag", "noindex, nofollow")
    if response.mimetype == "text/html":
        nonce = getattr(request, "csp_nonce", None)
        script = f"'nonce-{nonce}'" if nonce else "'none'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src {script}; form-action "
            "'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        for key, value in NO_CACHE.items():
            response.headers[key] = value
    return response


def _contact(message_id: int) -> tuple[Message, Contact]:
    with tracking().sessions() as session:
        row = session.execute(
            select(Message, Contact)
            .join(Contact, Contact.id == Message.contact_id)
            .where(Message.id == message_id, Message.channel != Channel.OWNER)  # not a customer's
        ).first()
    if row is None:
        abort(404)
    return row[0], row[1]


def _text(contact: Contact | None) -> dict[str, str]:
    locale = (contact.locale if contact else "en").split("-")[0].lower()
    return TEXT.get(locale, TEXT["en"])


def _masked(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'*' * max(2, len(local) - 1)}@{domain}"


def _page(name: str, contact: Contact | None, status: int = 200, **values: Any) -> Response:
    body = render_template(
        f"track/{name}.html", t=_text(contact), nonce=getattr(request, "csp_nonce", None), **values
    )
    return Response(body, status=status, mimetype="text/html")


# ---------------------------------------------------------------------------- opens and clicks


@bp.route("/o/<token>.gif", methods=["GET", "HEAD"])
@needs(PUBLIC)
def open_pixel(token: str) -> Response:
    payload = _payload("open", token)
    _hit("open", payload["m"])
    return Response(GIF, mimetype="image/gif", headers=NO_CACHE)


@bp.route("/c/<token>", methods=["GET", "HEAD"])
@needs(PUBLIC)
def click(token: str) -> Any:
    payload = _payload("click", token, "l")
    link = payload["l"]
    if type(link) is not int:
        abort(404)
    if link == TRAP_LINK:
        _hit("trap", payload["m"], link=link)
        return Response("", status=204, headers=NO_CACHE)
    links = tracking().links(payload["m"])
    if links is None or not 0 <= link < len(links):
        abort(404)
    _hit("click", payload["m"], link=link)
    response = redirect(links[link], code=302)
    response.headers.update(NO_CACHE)
    return response


# ---------------------------------------------------------------------------- answers


def _answer_value(payload: dict[str, Any]) -> str:
    value = payload.get("v")
    if type(value) is int and -1 < value <= 10:
        return str(value)
    if value in ("yes", "no"):
        return str(value)
    abort(404)


@bp.route("/a/<token>", methods=["GET", "HEAD"])
@needs(PUBLIC)
def answer_page(token: str) -> Response:
    """Not an answer yet: a page that posts it (scanners GET links; people press buttons)."""
    payload = _payload("answer", token, "v")
    value = _answer_value(payload)
    if request.method == "HEAD":
        return Response(status=200, mimetype="text/html")
    message, contact = _contact(payload["m"])
    request.csp_nonce = secrets.token_urlsafe(16)  # type: ignore[attr-defined]
    return _page(
        "answer_confirm", contact, value=value, csrf=tracking().form_token(message.id, "answer")
    )


@bp.post("/a/<token>")
@needs(PUBLIC)
def answer(token: str) -> Response:
    payload = _payload("answer", token, "v")
    value = _answer_value(payload)
    message, contact = _contact(payload["m"])
    if not tracking().form_ok(message.id, "answer"):
        return _page("message", contact, status=400, key="expired")
    _hit("answer", message.id, value=value)
    return _page(
        "answer_thanks",
        contact,
        value=value,
        token=token,
        csrf=tracking().form_token(message.id, "comment"),
    )


@bp.post("/a/<token>/comment")
@needs(PUBLIC)
def comment(token: str) -> Response:
    payload = _payload("answer", token, "v")
    message, contact = _contact(payload["m"])
    if not tracking().form_ok(message.id, "comment"):
        return _page("message", contact, status=400, key="expired")
    text = request.form.get("comment", "").strip()[:MAX_COMMENT]
    if text:
        _hit("comment", message.id, value=text)
    return _page("message", contact, key="comment_thanks")


# ---------------------------------------------------------------------------- unsubscribing


@bp.route("/u/<token>", methods=["GET", "HEAD"])
@needs(PUBLIC)
def unsubscribe_page(token: str) -> Response:
    payload = _payload("unsub", token)
    if request.method == "HEAD":
        return Response(status=200, mimetype="text/html")
    message, contact = _contact(payload["m"])
    return _page(
        "unsubscribe",
        contact,
        email=_masked(contact.email),
        csrf=tracking().form_token(message.id, "unsub"),
        preferences=tracking().tokens.preferences_url(message.id),
    )


@bp.post("/u/<token>")
@needs(PUBLIC)
def unsubscribe(token: str) -> Response:
    payload = _payload("unsub", token)
    if request.form.get("List-Unsubscribe") == "One-Click":  # RFC 8058, from the mail client
        _hit("unsubscribe", payload["m"])
        return Response("unsubscribed\n", mimetype="text/plain")
    message, contact = _contact(payload["m"])
    if not tracking().form_ok(message.id, "unsub"):
        return _page("message", contact, status=400, key="expired")
    _hit("unsubscribe", message.id)
    return _page("message", contact, key="unsubscribed", email=_masked(contact.email))


# ---------------------------------------------------------------------------- preferences


@bp.route("/p/<token>", methods=["GET", "HEAD"])
@needs(PUBLIC)
def preferences_page(token: str) -> Response:
    payload = _payload("prefs", token)
    if request.method == "HEAD":
        return Response(status=200, mimetype="text/html")
    message, contact = _contact(payload["m"])
    locale = _text(contact)["lang"]
    return _page(
        "preferences",
        contact,
        person=contact,
        categories=CATEGORIES,
        pauses=PAUSES,
        csrf=tracking().form_token(message.id, "prefs"),
        email=_masked(contact.email),
        opted_in=contact.consent_basis == ConsentBasis.OPT_IN,
        wording=defaults.CONSENT_WORDING[locale],
        wording_version=defaults.CONSENT_WORDING_VERSION,
    )


@bp.post("/p/<token>")
@needs(PUBLIC)
def preferences(token: str) -> Response:
    """Saved at once (a rare, deliberate act on a form; not a tracking hit)."""
    payload = _payload("prefs", token)
    message, contact = _contact(payload["m"])
    if not tracking().form_ok(message.id, "prefs"):
        return _page("message", contact, status=400, key="expired")
    wanted = set(request.form.getlist("category"))
    try:
        pause = int(request.form.get("pause", "0"))
    except ValueError:
        abort(400, "pause: expected a number of days")
    if pause not in PAUSES or not wanted <= set(CATEGORIES):
        abort(400, "unknown category or pause")
    everything_off = request.form.get("unsubscribe") == "all"
    agrees = request.form.get("consent") == "yes"
    if agrees and request.form.get("wording", "") != defaults.CONSENT_WORDING_VERSION:
        # The page showed other words than those an opt-in would now record: show it again.
        return _page("message", contact, status=400, key="expired")
    now = current_app.extensions["campaigns.clock"].now()
    with tracking().sessions() as session, session.begin():
        row = session.get(Contact, contact.id)
        if row is None:
            abort(404)
        row.opt_out = [c for c in CATEGORIES if c not in wanted]
        row.paused_until = now + timedelta(days=pause) if pause else None
        _record_consent(session, row, message, agrees and not everything_off, everything_off, now)
        if everything_off and row.subscribed:
            row.subscribed = False
            record_event(
                session,
                now,
                kind=EventKind.UNSUBSCRIBE,
                contact_id=row.id,
                message_id=message.id,
                enrollment_id=message.enrollment_id,
                journey_id=message.journey_id,
                step_id=message.step_id,
                reason="preference page",
            )
            outbox.emit(
                session,
                OutboundType.CONTACT_UNSUBSCRIBED,
                now,
                {"source": "preference page"},
                contact_id=row.id,
                message_id=message.id,
            )
        elif not everything_off and not row.subscribed and (wanted or agrees):
            row.subscribed = True  # choosing categories again (or opting in) is opting back in
    return _page(
        "message",
        contact,
        key="unsubscribed" if everything_off else "saved",
        email=_masked(contact.email),
    )


PREFERENCES_SOURCE = "preferences"
"""The source of consent given or withdrawn on the preference page."""


def _record_consent(
    session: Any, row: Contact, message: Message, agrees: bool, unsubscribes: bool, now: Any
) -> None:
    """The preference page's consent: ticking the box records an opt-in with the wording's
    version; clearing it (after an opt-in) or unsubscribing from everything records a
    withdrawal. Nothing is recorded when nothing changes."""
    detail = {"message_id": message.id}
    if agrees and row.consent_basis != ConsentBasis.OPT_IN:
        consent.record(
            session,
            row,
            ConsentBasis.OPT_IN,
            at=now,
            source=PREFERENCES_SOURCE,
            wording=defaults.CONSENT_WORDING_VERSION,
            detail={**detail, "locale": _text(row)["lang"]},
        )
        return
    withdraws = (
        (row.consent_basis is not None or row.subscribed)
        if unsubscribes
        else (not agrees and row.consent_basis == ConsentBasis.OPT_IN)
    )
    if withdraws:
        consent.record(session, row, None, at=now, source=PREFERENCES_SOURCE, detail=detail)
