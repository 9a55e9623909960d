"""The project on disk: the journeys folder, its segments file and the templates folder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from campaigns import defaults
from campaigns.config import Config
from campaigns.content import footer
from campaigns.content.mime import Sender
from campaigns.content.render import Renderer
from campaigns.content.sender import SENDER_FILE, SenderSet, load_senders
from campaigns.content.templates import TemplateError, TemplateStore
from campaigns.exceptions import CampaignsError, JourneyError, Problem
from campaigns.journeys.model import Journey
from campaigns.journeys.scorecards import ScorecardSet, load_scorecards
from campaigns.journeys.segments import SegmentSet, load_segments
from campaigns.journeys.triggers import TRIGGERS_FILE, TriggerSet, load_triggers
from campaigns.journeys.validate import validate_files
from campaigns.journeys.yamlsource import YamlProblem, load, read
from campaigns.tracking.tokens import Tokens

_NOT_JOURNEYS = (defaults.SEGMENTS_FILE, defaults.SCORECARDS_FILE, TRIGGERS_FILE)
"""Files of the journeys folder that are not journeys (checked on their own)."""


@dataclass
class Checked:
    """What validating a set of paths found: the journeys that passed and every problem."""

    journeys: list[tuple[Journey, Path]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    segments: SegmentSet | None = None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from the next (None when it cannot be read)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


class Project:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.templates = TemplateStore(config.templates_dir, defaults.DEFAULT_LOCALE)
        # The engine asks for the segments and triggers on every pass and batch: each file is
        # parsed again only when it changed (a pass parsed them a few times over, most of an
        # idle pass's time).
        self._segments: tuple[tuple[int, int, int], SegmentSet] | None = None
        self._triggers: tuple[tuple[int, int, int] | None, SegmentSet, TriggerSet] | None = None

    def segments(self) -> SegmentSet:
        """The segments file, its rules comparing amounts at the configured rates."""
        path = self.config.segments_file
        stamp = _stamp(path)
        if stamp is not None and self._segments is not None and self._segments[0] == stamp:
            return self._segments[1]
        found = load_segments(path, currencies=self.config.currencies)
        if stamp is not None:
            self._segments = (stamp, found)
        return found

    def triggers(self, segments: SegmentSet | None = None) -> TriggerSet:
        """The trigger points of ``journeys/triggers.yaml`` (none when there is no file);
        raises :class:`JourneyError` with every problem of the file."""
        path = self.config.journeys_dir / TRIGGERS_FILE
        segset = segments if segments is not None else self.segments()
        stamp = _stamp(path)
        cached = self._triggers
        if cached is not None and cached[0] == stamp and cached[1] is segset:
            return cached[2]
        found = load_triggers(path, segset)
        self._triggers = (stamp, segset, found)
        return found

    def scorecards(self, segments: SegmentSet | None = None) -> ScorecardSet | None:
        """The health scorecards (``journeys/scorecards.yaml``), checked against the tiers of
        ``segments`` (default: the segments file); None when there is no such file."""
        path = self.config.scorecards_file
        if not path.exists():
            return None
        return load_scorecards(path, segments if segments is not None else self.segments())

    def links(self) -> dict[str, str]:
        """The named link destinations of ``templates/links.yaml`` (Jinja allowed).

        Raises :class:`JourneyError` with the problem's place when the file is not a list of
        links, :class:`CampaignsError` when it cannot be read at all."""
        path = self.config.templates_dir / "links.yaml"
        if not path.exists():
            return {}
        try:
            data = load(read(path))
        except YamlProblem as exc:
            raise JourneyError(
                [Problem(str(path), exc.pos.line, exc.pos.col, exc.message, exc.hint)]
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CampaignsError(f"{path}: cannot read the links: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise JourneyError([Problem(str(path), 1, 1, "write one 'name: https://...' per line")])
        return {str(k): v for k, v in data.items()}

    def senders(self) -> SenderSet:
        """The brands of ``templates/sender.yaml`` (none when there is no file); raises
        :class:`JourneyError` with every problem of the file."""
        return load_senders(self.config.templates_dir / SENDER_FILE)

    def journey_files(self, paths: Iterable[Path] = ()) -> list[Path]:
        """The journey files named, folders expanded; the journeys folder when none is named."""
        paths = list(paths) or [self.config.journeys_dir]
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files.extend(p for p in sorted(path.glob("*.y*ml")) if p.name not in _NOT_JOURNEYS)
            elif path.name not in _NOT_JOURNEYS:
                files.append(path)
        return files

    def check(self, paths: Iterable[Path] = ()) -> Checked:
        """Check the segments file and the journeys in ``paths`` against it and the templates."""
        checked = Checked()
        try:
            checked.segments = self.segments()
        except JourneyError as exc:
            checked.problems.extend(exc.problems)
        senders: SenderSet | None = None
        try:
            senders = self.senders()
        except JourneyError as exc:
            checked.problems.extend(exc.problems)
        except CampaignsError as exc:
            checked.problems.append(
                Problem(str(self.config.templates_dir / SENDER_FILE), 1, 1, str(exc))
            )
        checked.journeys, problems = validate_files(
            self.journey_files(paths),
            segments=checked.segments,
            templates=set(self.templates.names()),
            brands=senders.names if senders is not None else None,
        )
        checked.problems.extend(problems)
        if senders is not None:
            checked.problems.extend(self.check_footers(checked.journeys, senders))
        if checked.segments is not None:
            try:
                self.scorecards(checked.segments)
            except JourneyError as exc:
                checked.problems.extend(exc.problems)
        checked.problems.extend(self.check_templates(j for j, _ in checked.journeys))
        if checked.segments is not None:
            try:
                self.triggers(checked.segments)
            except JourneyError as exc:
                checked.problems.extend(exc.problems)
        try:
            self.links()
        except JourneyError as exc:
            checked.problems.extend(exc.problems)
        except CampaignsError as exc:
            checked.problems.append(
                Problem(
                    str(self.config.templates_dir / "links.yaml"), 1, 1, str(exc).split(": ", 1)[-1]
                )
            )
        return checked

    def check_footers(
        self, journeys: Iterable[tuple[Journey, Path]], senders: SenderSet
    ) -> list[Problem]:
        """The legal footer of each Japanese template the journeys send (in their brand):
        one problem per item a part lacks (:mod:`campaigns.content.footer`)."""
        mail_from = self.config.mail_from
        renderer = Renderer(
            self.templates,
            Tokens("validate-footers", self.config.base_url),
            Sender(mail_from.address, mail_from.name),
            senders=senders,
        )
        problems: list[Problem] = []
        seen: set[tuple[str, str | None]] = set()
        for journey, _path in journeys:
            for name in journey.templates():
                if (name, journey.brand) in seen or "ja" not in self.templates.locales(name):
                    continue
                seen.add((name, journey.brand))
                try:
                    found = footer.lacks(renderer, name, "ja", journey.brand)
                except TemplateError:
                    continue  # check_templates names it
                for lack in found:
                    path = self.config.templates_dir / "ja" / f"{name}.{lack.part}"
                    hint = lack.hint.replace("sender.yaml", str(senders.path))
                    brand = f" (brand '{journey.brand}')" if journey.brand else ""
                    problem = Problem(str(path), 1, 1, lack.message + brand, hint)
                    if problem not in problems:
                        problems.append(problem)
        return problems

    def check_templates(self, journeys: Iterable[Journey]) -> list[Problem]:
        """Compile every template the journeys name, in every locale it exists in."""
        problems: list[Problem] = []
        names = dict.fromkeys(name for journey in journeys for name in journey.templates())
        for name in names:
            for locale in self.templates.locales(name):
                try:
                    self.templates.compile(name, locale)
                except TemplateError as exc:
                    path = (
                        str(exc.path)
                        if exc.path
                        else str(self.config.templates_dir / locale / name)
                    )
                    problems.append(Problem(path, exc.line or 1, 1, exc.reason))
        return problems
