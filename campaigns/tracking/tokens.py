"""Signed tokens for the links in an email: open pixel, clicks, answers, unsubscribe.

Every URL the tracking endpoints serve carries a token signed with ``SECRET_KEY`` (HMAC-SHA256
through itsdangerous, with a separate salt per purpose), so a forged, altered, truncated or
re-purposed token decodes to nothing and records nothing. Payloads hold row ids and short
values under one-letter keys, never personal data: a token in a proxy's or a scanner's log
tells nobody who the recipient is.

==========  ==================  ==============================
purpose     payload             URL
==========  ==================  ==============================
``open``    ``{"m": 7}``        ``{base}/t/o/{token}.gif``
``click``   ``{"m": 7, "l": 2}``  ``{base}/t/c/{token}``
``answer``  ``{"m": 7, "v": 9}``  ``{base}/t/a/{token}``
``unsub``   ``{"m": 7}``        ``{base}/t/u/{token}``
``prefs``   ``{"m": 7}``        ``{base}/t/p/{token}``
==========  ==================  ==============================

``m`` is the Message row id, ``l`` the index into the links stored on that row (so a click
can only lead to a link that was in the message; :data:`TRAP_LINK` for the hidden trap link)
and ``v`` the answer: a score or ``"yes"`` / ``"no"``. Tokens do not expire: an unsubscribe
link must keep working for as long as the email sits in someone's inbox.

Signing is on the hot path (an NPS email carries 15 or so tokens), so :meth:`Tokens.dumps`
signs with a prepared HMAC instead of going through itsdangerous for every token (~5 µs
instead of ~40), and :meth:`Tokens.loads` verifies the same way (every pixel and click). The
bytes are exactly what ``URLSafeSerializer`` produces; the tests hold the two to each other,
for forged and mutated tokens too.

Each token has one spelling. Base64 decoders are lenient: they drop ``=`` padding, skip
characters outside the alphabet and ignore the low bits of the last character that carry
no data (``...hats``, ``...hatt``, ``...hatu`` and ``...hatv`` decode alike), so itsdangerous
alone accepts ``token=``, ``token==`` and three spellings of every signature. Each would be
a URL of its own recording the same hit, a way past caches and dedupe keyed on the URL.
:meth:`Tokens.loads` accepts only the exact text :meth:`Tokens.dumps` writes, and
:func:`canonical` is the same rule for any itsdangerous token (the forms' CSRF tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

PURPOSES = ("open", "click", "answer", "unsub", "prefs")
"""What a token may be for; each signs with its own salt, so one cannot stand in for another."""

TRAP_LINK = -1
"""The link index of the hidden trap link in every email: a click on it is a machine's."""

MAX_TOKEN_LENGTH = 2_048
"""Longer strings are not tokens this module made: refused before any work is done."""

_SALT_PREFIX = "campaigns.tokens."

_SIGNATURE_LENGTH = 43
"""Characters of an unpadded base64url SHA-256 digest (32 bytes)."""

_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PART = re.compile(r"[A-Za-z0-9_-]+")
_UNUSED_BITS = {0: 0, 2: 4, 3: 2}
"""Low bits of the last character that carry no data, by the part's length mod 4 (1 is
never a length base64 writes)."""


def canonical(token: str) -> bool:
    """Whether every dot-separated part of ``token`` is unpadded base64url exactly as an
    encoder writes it: only the 64 characters, a length base64 produces, and zero in the bits
    of the last character that carry no data.

    Checked on the characters, without decoding: the reference for :meth:`Tokens.loads`
    (which checks the same by re-encoding) and the check for tokens only itsdangerous reads.
    """
    for part in token.split("."):
        if not _PART.fullmatch(part) or len(part) % 4 == 1:
            return False
        if _BASE64URL.index(part[-1]) & ((1 << _UNUSED_BITS[len(part) % 4]) - 1):
            return False
    return True


class Tokens:
    """Signs and verifies tokens, and builds the tracking URLs under ``base_url``."""

    def __init__(self, secret: str, base_url: str) -> None:
        if not secret:
            raise ValueError("Tokens needs a non-empty secret")
        self.base_url = base_url.rstrip("/")
        self._serializers: dict[str, URLSafeSerializer] = {}
        self._macs: dict[str, hmac.HMAC] = {}
        for purpose in PURPOSES:
            serializer = URLSafeSerializer(
                secret,
                salt=_SALT_PREFIX + purpose,
                signer_kwargs={"digest_method": hashlib.sha256},
            )
            self._serializers[purpose] = serializer
            # The key itsdangerous derives from (secret, salt), computed once per purpose.
            key = serializer.make_signer().derive_key()
            self._macs[purpose] = hmac.new(key, digestmod=hashlib.sha256)

    # -- signing and verifying ------------------------------------------------------

    def dumps(self, purpose: str, payload: dict[str, Any]) -> str:
        """``payload`` (JSON-able) signed for ``purpose``."""
        return self._sign(purpose, json.dumps(payload, separators=(",", ":")))

    def loads(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The payload ``token`` was signed with for ``purpose``; None if it was not.

        Never raises: anything that arrives in a URL is either one of our tokens, intact,
        for this purpose and spelt exactly as :meth:`dumps` spells it, or nothing at all.
        Verifies the HMAC with the prepared key (constant-time compare) before decoding
        anything; the same check as ``URLSafeSerializer.loads`` plus :func:`canonical`,
        which the tests hold it to, at a fraction of the cost (this runs on every pixel and
        click).
        """
        mac = self._macs.get(purpose)
        if mac is None or not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            return None
        body, dot, signature = token.rpartition(".")
        if not dot or not body or len(signature) != _SIGNATURE_LENGTH or not token.isascii():
            return None
        written = body.encode("ascii")
        expected = mac.copy()
        expected.update(written)
        # The signature we would write, compared as text: padding, a stray character or a
        # last character that differs only in bits base64 drops cannot match it.
        if not hmac.compare_digest(signature.encode("ascii"), _encode(expected.digest())):
            return None
        try:
            data = base64.urlsafe_b64decode(written + b"=" * (-len(written) % 4))
            # The body is signed as written, so only one we wrote gets here; re-encoding keeps
            # "one spelling" a rule of this function, not of how every token was ever signed.
            if _encode(data) != written:
                return None
            payload = json.loads(data)
        except (ValueError, TypeError):  # binascii.Error and UnicodeError are ValueErrors
            return None
        return payload if isinstance(payload, dict) else None

    def loads_slowly(self, purpose: str, token: str) -> dict[str, Any] | None:
        """:meth:`loads` through itsdangerous itself and :func:`canonical` (for tests that hold
        the two together)."""
        serializer = self._serializers.get(purpose)
        if (
            serializer is None
            or not isinstance(token, str)
            or len(token) > MAX_TOKEN_LENGTH
            or not canonical(token)
        ):
            return None
        try:
            payload = serializer.loads(token)
        except (BadData, ValueError, TypeError):
            return None
        return payload if isinstance(payload, dict) else None

    def _sign(self, purpose: str, payload_json: str) -> str:
        mac = self._macs.get(purpose)
        if mac is None:
            raise ValueError(f"unknown token purpose {purpose!r}; one of {', '.join(PURPOSES)}")
        body = _encode(payload_json.encode())
        mac = mac.copy()
        mac.update(body)
        return (body + b"." + _encode(mac.digest())).decode("ascii")

    # -- the tracking URLs -----------------------------------------------------------
    # Built with the JSON written out: the payloads are fixed shapes of integers, and
    # json.dumps would cost as much as the signing.

    def open_url(self, message: int) -> str:
        """The open pixel of a message."""
        return f"{self.base_url}/t/o/{self._sign('open', _ids(message))}.gif"

    def click_url(self, message: int, link: int) -> str:
        """A tracked link: ``link`` is its index in the links stored on the message."""
        payload = f'{{"m":{_int(message)},"l":{_int(link)}}}'
        return f"{self.base_url}/t/c/{self._sign('click', payload)}"

    def answer_url(self, message: int, value: int | str) -> str:
        """A one-click answer: an NPS/CSAT score, or ``"yes"``/``"no"`` to an invite."""
        answer = str(_int(value)) if isinstance(value, int) else json.dumps(value)
        payload = f'{{"m":{_int(message)},"v":{answer}}}'
        return f"{self.base_url}/t/a/{self._sign('answer', payload)}"

    def unsubscribe_url(self, message: int) -> str:
        """The unsubscribe page, which also takes the RFC 8058 one-click POST."""
        return f"{self.base_url}/t/u/{self._sign('unsub', _ids(message))}"

    def unsubscribe_token(self, message: int) -> str:
        """The token of :meth:`unsubscribe_url`, which the mailto address carries too."""
        return self._sign("unsub", _ids(message))

    def unsubscribe_mailto(self, message: int, domain: str) -> str:
        """The ``mailto:`` of List-Unsubscribe: ``unsubscribe+TOKEN@domain``, the token of the
        https link; ``campaigns inbound`` reads the mail sent there (:func:`mailto_token`)."""
        return mailto_uri(self.unsubscribe_token(message), domain)

    def preferences_url(self, message: int) -> str:
        """The page where a recipient picks the categories of email they want."""
        return f"{self.base_url}/t/p/{self._sign('prefs', _ids(message))}"


UNSUBSCRIBE_MAILBOX = "unsubscribe"
"""The local part of the unsubscribe address, before ``+TOKEN``."""


def mailto_uri(token: str, domain: str) -> str:
    """``mailto:unsubscribe+TOKEN@domain?subject=unsubscribe`` (RFC 8058 asks for both URIs)."""
    return f"mailto:{UNSUBSCRIBE_MAILBOX}+{token}@{domain}?subject=unsubscribe"


def mailto_token(address: str) -> str | None:
    """The token in an ``unsubscribe+TOKEN@domain`` address (angle brackets, a display name
    or a ``mailto:`` prefix allowed); None when it is not one. Not verified: pass it to
    :meth:`Tokens.loads` with the ``unsub`` purpose."""
    text = address.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    if text.lower().startswith("mailto:"):
        text = text[7:].split("?", 1)[0]
    local, at, _domain = text.rpartition("@")
    prefix = UNSUBSCRIBE_MAILBOX + "+"
    if not at or not local.lower().startswith(prefix):
        return None
    token = local[len(prefix) :]
    return token if token and len(token) <= MAX_TOKEN_LENGTH else None


def _encode(data: bytes) -> bytes:
    """Unpadded base64url: the one spelling of ``data`` in a token."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _int(value: int) -> int:
    """``value`` if it is a plain integer (not a bool, not a str of digits)."""
    if type(value) is not int:
        raise TypeError(f"expected an integer id or score, got {value!r}")
    return value


def _ids(message: int) -> str:
    return f'{{"m":{_int(message)}}}'
