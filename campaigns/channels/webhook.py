"""The webhook channel: a journey step POSTs a signed JSON document to a URL.

The body is signed Stripe-style (``X-Campaigns-Signature: t=<unix time>,v1=<hex HMAC-SHA256
of "t.body">``, with ``SECRET_KEY``) so the receiver can check it came from us. A 2xx is
delivered; a 4xx other than 408/429 is refused for good; anything else (5xx, 408, 429, no
answer) is worth another try, which the engine schedules with its backoff.

A dry run (``campaigns simulate``) gets :class:`RecordingWebhook` instead: it keeps each call
and posts nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from campaigns.channels.base import SENT, Receipt, Status

TIMEOUT = 10.0
"""Seconds to wait for the receiver."""


@dataclass(frozen=True)
class Call:
    """One POST: where, and the JSON body (already encoded)."""

    url: str
    body: bytes


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`` (the Stripe-style scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def post_json(url: str, body: bytes, signature: str, timeout: float = TIMEOUT) -> int:
    """POST ``body``; return the HTTP status (0 when the server could not be reached)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "campaigns-webhook/1",
            "X-Campaigns-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, TimeoutError, OSError):
        return 0


class WebhookChannel:
    """Signed JSON POSTs to the URLs journeys name."""

    name = "webhook"

    def __init__(self, secret: str, timeout: float = TIMEOUT) -> None:
        self.secret = secret
        self.timeout = timeout

    def push(self, item: Call) -> Receipt:
        status = post_json(
            item.url, item.body, sign(self.secret, item.body, int(time.time())), self.timeout
        )
        if 200 <= status < 300:
            return SENT
        if 400 <= status < 500 and status not in (408, 429):
            return Receipt(Status.FAILED, f"HTTP {status}")
        return Receipt(Status.RETRY, f"HTTP {status}" if status else "unreachable")

    def close(self) -> None:
        """Nothing to release: each POST opens its own connection."""


class RecordingWebhook(WebhookChannel):
    """The dry run's webhook: every call is kept and answered as delivered; nothing is
    posted, so the receiver never hears of a simulation."""

    def __init__(self, secret: str = "", timeout: float = TIMEOUT) -> None:
        super().__init__(secret, timeout)
        self.calls: list[Call] = []

    def push(self, item: Call) -> Receipt:
        self.calls.append(item)
        return SENT

    def close(self) -> None:
        self.calls.clear()
