"""The parsed journeys of stored versions, one cache per process.

A deployed version's text never changes (a new text is a new version), so it is parsed once
and kept. The engine, the dashboard's preview and the report all read journeys through one
:class:`ParsedJourneys`, built by the composition root (:func:`campaigns.services.build`),
instead of each keeping its own cache.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from sqlalchemy.orm import Session

from campaigns.exceptions import JourneyError
from campaigns.journeys.model import Journey
from campaigns.journeys.parse import parse_journey
from campaigns.store.models import JourneyVersion

SIZE = 2048
"""Versions kept; past it the least recently used is dropped (a text parses again when asked)."""


class ParsedJourneys:
    """Parsed journeys by their source text and path (thread-safe: the web app is threaded)."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._parsed: OrderedDict[tuple[str, str], Journey] = OrderedDict()
        self._by_version: dict[int, Journey] = {}  # the engine asks by id on every claim
        self._lock = Lock()

    def parse(self, source: str, path: str) -> Journey:
        """The journey of ``source``; raises :class:`JourneyError` as the parser does."""
        key = (source, path)
        with self._lock:
            journey = self._parsed.get(key)
            if journey is not None:
                self._parsed.move_to_end(key)
                return journey
        journey = parse_journey(source, path)
        with self._lock:
            self._parsed[key] = journey
            while len(self._parsed) > self.size:
                self._parsed.popitem(last=False)
        return journey

    def parse_or_none(self, source: str, path: str) -> Journey | None:
        """The journey, or None for a version stored by an older release that no longer parses."""
        try:
            return self.parse(source, path)
        except JourneyError:
            return None

    def version(self, session: Session, version_id: int) -> Journey:
        """The journey of stored version ``version_id``; LookupError if it is gone."""
        journey = self._by_version.get(version_id)
        if journey is not None:
            return journey
        version = session.get(JourneyVersion, version_id)
        if version is None:
            raise LookupError(f"journey version {version_id} is gone")
        journey = self.parse(version.source_text, version.source_path)
        with self._lock:
            if len(self._by_version) >= self.size:
                self._by_version.clear()
            self._by_version[version_id] = journey
        return journey
