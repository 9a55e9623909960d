"""Deploying journeys: each changed text becomes a new version; running enrollments stay put.

A deploy stores the source text and its hash. Deploying the same text again creates
nothing; deploying an older text again makes that version current without copying it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.journeys.model import Journey
from campaigns.store.models import Journey as JourneyRow
from campaigns.store.models import JourneyVersion, utcnow


@dataclass(frozen=True)
class DeployResult:
    key: str
    version: int
    created: bool  # False: this exact text was deployed before


def source_hash(text: str) -> str:
    """The hash of a journey's text, blind to line-ending style."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def deploy(session: Session, journey: Journey, source_text: str, source_path: str) -> DeployResult:
    """Store ``journey`` (already checked) as the current version of its journey."""
    row = session.scalars(select(JourneyRow).where(JourneyRow.key == journey.key)).one_or_none()
    if row is None:
        row = JourneyRow(key=journey.key, name=journey.name)
        session.add(row)
        session.flush()
    row.name = journey.name
    digest = source_hash(source_text)
    existing = session.scalars(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == row.id, JourneyVersion.source_hash == digest
        )
    ).one_or_none()
    if existing is not None:
        if row.current_version_id != existing.id:
            row.current_version_id = existing.id
            row.updated_at = utcnow()
        return DeployResult(journey.key, existing.number, created=False)
    number = (
        session.scalar(
            select(func.max(JourneyVersion.number)).where(JourneyVersion.journey_id == row.id)
        )
        or 0
    ) + 1
    version = JourneyVersion(
        journey_id=row.id,
        number=number,
        source_path=source_path,
        source_text=source_text,
        source_hash=digest,
        definition=journey.to_json(),
    )
    session.add(version)
    session.flush()
    row.current_version_id = version.id
    return DeployResult(journey.key, number, created=True)
