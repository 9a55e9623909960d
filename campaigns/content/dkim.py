"""DKIM signatures on customer email (optional: ``DKIM_PRIVATE_KEY_FILE`` and friends).

Most relays sign for their customers, and that is cheaper (an RSA-2048 signature costs ~9 ms
in Python, more than rendering the message); sign here when the relay does not, or when the
signature must be made with the brand's own key. The key is read and checked at start by
:mod:`campaigns.config`; :class:`Signer` puts a ``DKIM-Signature`` on top of the bytes the
renderer assembled, with relaxed/relaxed canonicalisation (relays may refold headers).

The signature covers :data:`SIGNED_HEADERS`: the ones a receiver shows or acts on (From,
Subject, Reply-To, the List-Unsubscribe pair that RFC 8058 requires to be signed) and those
that say what the message is (Date, Message-ID, MIME-Version, Content-Type). A header the
message lacks is signed as absent, so a relay cannot add one afterwards (a Reply-To).
"""

from __future__ import annotations

import dkim

from campaigns.config import DkimKey

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"mime-version",
    b"content-type",
)


class Signer:
    """Signs message bytes with one key; thread-safe (dkimpy keeps no state between calls)."""

    def __init__(self, key: DkimKey) -> None:
        self.key = key
        self._selector = key.selector.encode("ascii")
        self._domain = key.domain.encode("ascii")
        self._algorithm = key.algorithm.encode("ascii")

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with its ``DKIM-Signature`` header first."""
        signature = dkim.sign(
            raw,
            self._selector,
            self._domain,
            self.key.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
            signature_algorithm=self._algorithm,
            linesep=b"\r\n",
        )
        return signature + raw
