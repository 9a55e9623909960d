"""The test kit's plain values: the fake clock's start, the signing secret, the segments
most engine tests need, the links the shipped templates use, and the renderer every engine
test builds. Fixtures in ``conftest.py`` use them; tests import them from here when they
need the same value (``from tests.kit import LINKS``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from campaigns.content.mime import Sender
from campaigns.content.render import Renderer
from campaigns.content.sender import SENDER_FILE, load_senders
from campaigns.content.templates import TemplateStore
from campaigns.store.models import Contact
from campaigns.tracking.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent

START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
"""Where the ``clock`` fixture starts: a Tuesday, 10:00 in Tokyo."""
TEST_SECRET = "test-secret-key-0123456789"
"""The signing secret of the kit's tokens (engine and app): tests that check a signature use
it, or pass their own to both."""
TEST_BASE_URL = "https://cs.example.com"
EVERYONE = "tiers:\n  everyone: {when: true}\n"
"""The segments file most engine tests need: one segment that holds every contact."""
KIT_CONSENT = "opt_in"
"""The consent basis every contact the tests write gets unless it says otherwise (the
``_contacts_consent_by_default`` fixture): marketing mail reaches them under every rule."""
LINKS = {"docs": "https://docs.example.com/", "help": "https://help.example.com/"}
"""The ``links`` the shipped templates use; pass them to ``build_engine(links=LINKS)``."""


def without_consent(session: Session, *contacts: Contact) -> None:
    """Take the kit's default consent away from ``contacts`` (written already): as a contact
    imported with no basis, they get no marketing mail under any shipped rule."""
    session.flush()
    for contact in contacts:
        contact.consent_basis = None
    session.flush()


def make_renderer(
    *,
    secret: str = TEST_SECRET,
    base_url: str = TEST_BASE_URL,
    sender: Sender | None = None,
    domain: str = "example.com",
    templates: Path = ROOT / "templates",
) -> Renderer:
    """The renderer every engine test uses: the shipped templates, tokens signed with
    ``secret`` and links under ``base_url``, mail from ``cs@example.com``, the brands of the
    folder's ``sender.yaml``."""
    return Renderer(
        TemplateStore(templates),
        Tokens(secret, base_url),
        sender or Sender("cs@example.com"),
        domain=domain,
        senders=load_senders(templates / SENDER_FILE),
    )
