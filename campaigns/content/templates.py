"""Email templates on disk, compiled once per version: MJML for HTML, Jinja for both parts.

Layout: ``<root>/<locale>/<name>.mjml`` (the HTML part: MJML with Jinja placeholders) and
``<root>/<locale>/<name>.txt`` (the plain-text part: Jinja). Files whose name starts with
``_`` are partials, shared chrome that templates pull in:

- MJML uses ``<mj-include path="_footer.mjml" />``, resolved beside the including file (as
  the MJML tools do). mjml-python supports it through a loader callback, one level deep.
- Text uses ``{% include "_footer.txt" %}``, expanded here, so the text part the renderer
  gets is self-contained Jinja source.

MJML knows nothing of Jinja, and its parser stumbles over some Jinja (``{% if a < b %}``)
or may drop text it does not expect. So every Jinja tag is swapped for an inert token
before compiling and swapped back after; a tag that MJML dropped is an error naming its
line, never a silently broken email. The result is cached by a hash of the content of
every file involved, so an edited template or partial recompiles on the next call.

See docs/templates.md for the context variables templates may use.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from jinja2 import Environment, TemplateSyntaxError
from mjml import mjml2html

from campaigns import defaults
from campaigns.exceptions import CampaignsError
from campaigns.journeys.textfilters import filter_problems

MJML_SUFFIX = ".mjml"
TEXT_SUFFIX = ".txt"

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_MJ_TAG = re.compile(r"<\s*(/?)\s*(mjml|mj-[a-z-]+)\b([^>]*?)(/?)\s*>", re.S)
_INCLUDE_PATH = re.compile(r"""\bpath\s*=\s*(["'])(.*?)\1""", re.S)
_TEXT_INCLUDE = re.compile(r"""\{%\s*include\s+(["'])([^"']+)\1\s*%\}""")
_ANY_TEXT_INCLUDE = re.compile(r"\{%-?\s*include\b")

# fmt: off
MJML_TAGS = frozenset((
    "mjml", "mj-head", "mj-body", "mj-include", "mj-attributes", "mj-all", "mj-class",
    "mj-breakpoint", "mj-font", "mj-html-attributes", "mj-html-attribute", "mj-selector",
    "mj-preview", "mj-style", "mj-title", "mj-raw", "mj-accordion", "mj-accordion-element",
    "mj-accordion-title", "mj-accordion-text", "mj-button", "mj-carousel", "mj-carousel-image",
    "mj-column", "mj-divider", "mj-group", "mj-hero", "mj-image", "mj-navbar", "mj-navbar-link",
    "mj-section", "mj-social", "mj-social-element", "mj-spacer", "mj-table", "mj-text",
    "mj-wrapper",
))
# fmt: on
"""The MJML elements mjml-python renders; any other ``mj-`` tag would be dropped silently."""

_SYNTAX = Environment()  # parsing only: the renderer's sandbox uses the same syntax


class TemplateError(CampaignsError):
    """A template is missing, unreadable, or does not compile; names the file and line."""

    def __init__(
        self, message: str, path: Path | str | None = None, line: int | None = None
    ) -> None:
        self.reason = message
        self.path = Path(path) if path is not None else None
        self.line = line
        place = "" if self.path is None else f"{self.path}:{line}: " if line else f"{self.path}: "
        super().__init__(place + message)


class TemplateNotFound(TemplateError):
    """No locale holds the named template (neither the one asked for nor the default)."""


@dataclass(frozen=True)
class TemplateSource:
    """One template in one locale, as written: the MJML file, its partials and the text."""

    name: str
    locale: str
    mjml: str
    text: str
    """The plain-text part with its ``{% include %}`` partials expanded."""
    mjml_path: Path = Path()
    text_path: Path = Path()
    includes: Mapping[str, str] = field(default_factory=dict)
    """Each ``<mj-include path>`` of the MJML part, as written, mapped to its content."""

    @property
    def hash(self) -> str:
        """A hash of everything that goes into the compiled template."""
        digest = hashlib.sha256()
        parts = [self.name, self.locale, self.mjml, self.text]
        for path, content in sorted(self.includes.items()):
            parts += [path, content]
        for part in parts:
            data = part.encode()
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()


@dataclass(frozen=True)
class CompiledTemplate:
    """A template ready for per-recipient Jinja: HTML from MJML, text as written."""

    name: str
    locale: str
    html: str
    text: str
    hash: str


class TemplateStore:
    """The templates under ``root``, looked up by name and locale, compiled on demand.

    A locale without a translation falls back to ``default_locale``. Compiled templates are
    kept per name and locale and reused while the files' content is unchanged.
    """

    def __init__(self, root: Path, default_locale: str = defaults.DEFAULT_LOCALE) -> None:
        self.root = Path(root)
        self.default_locale = default_locale
        self._compiled: dict[tuple[str, str], CompiledTemplate] = {}
        self._lock = threading.Lock()

    # -- looking up ------------------------------------------------------------------

    def _locale_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _LOCALE.fullmatch(p.name))

    def names(self) -> list[str]:
        """Every template name in any locale (partials excluded), sorted."""
        found: set[str] = set()
        for folder in self._locale_dirs():
            for path in folder.iterdir():
                if path.suffix in (MJML_SUFFIX, TEXT_SUFFIX) and _NAME.fullmatch(path.stem):
                    found.add(path.stem)
        return sorted(found)

    def locales(self, name: str) -> list[str]:
        """The locales that hold both parts of ``name``."""
        if not _NAME.fullmatch(name):
            return []
        return [
            folder.name
            for folder in self._locale_dirs()
            if (folder / (name + MJML_SUFFIX)).is_file()
            and (folder / (name + TEXT_SUFFIX)).is_file()
        ]

    def exists(self, name: str) -> bool:
        """True when some locale holds both parts of ``name``."""
        return bool(self.locales(name))

    def _candidates(self, locale: str) -> list[str]:
        """``ja-JP`` -> ``ja-jp``, ``ja``, then the default locale."""
        wanted: list[str] = []
        if locale and _LOCALE.fullmatch(locale):
            full = locale.lower().replace("_", "-")
            wanted += [full, full.split("-", 1)[0]]
        wanted.append(self.default_locale)
        return list(dict.fromkeys(wanted))

    def source(self, name: str, locale: str) -> TemplateSource:
        """The template ``name`` in ``locale``, or in the default locale if not translated.

        A locale that holds only one of the two parts is an error, not a fallback: a half
        translated template is a mistake to fix, not to hide.
        """
        if not _NAME.fullmatch(name):
            raise TemplateNotFound(
                f"{name!r} is not a template name (lowercase letters, digits and _)"
            )
        for candidate in self._candidates(locale):
            folder = self.root / candidate
            mjml_path = folder / (name + MJML_SUFFIX)
            text_path = folder / (name + TEXT_SUFFIX)
            has_mjml, has_text = mjml_path.is_file(), text_path.is_file()
            if has_mjml and has_text:
                return self._load(name, candidate, mjml_path, text_path)
            if has_mjml or has_text:
                missing = text_path if has_mjml else mjml_path
                raise TemplateError(
                    f"{missing.name} is missing: every template needs an .mjml (HTML)"
                    " and a .txt (plain-text) part",
                    missing,
                )
        raise TemplateNotFound(
            f"no template {name!r} for locale {locale!r}"
            f" (looked in {', '.join(str(self.root / c) for c in self._candidates(locale))})"
        )

    def _load(self, name: str, locale: str, mjml_path: Path, text_path: Path) -> TemplateSource:
        mjml = _read(mjml_path)
        includes: dict[str, str] = {}
        for include, line in _mjml_includes(mjml, mjml_path):
            if include not in includes:
                includes[include] = _read(self._partial(mjml_path, include, line))
        text = self._expand_text(_read(text_path), text_path)
        return TemplateSource(
            name=name,
            locale=locale,
            mjml=mjml,
            text=text,
            mjml_path=mjml_path,
            text_path=text_path,
            includes=MappingProxyType(includes),
        )

    def _partial(self, including: Path, include: str, line: int) -> Path:
        """The file an include names, beside the including file and inside ``root``."""
        target = including.parent / include
        root = self.root.resolve()
        if Path(include).is_absolute() or not target.resolve().is_relative_to(root):
            raise TemplateError(
                f"include {include!r} must be a path inside {self.root}", including, line
            )
        if not target.is_file():
            raise TemplateError(f"included file {include!r} does not exist", including, line)
        return target

    def _expand_text(self, text: str, path: Path) -> str:
        """Replace each ``{% include "_x.txt" %}`` with the partial's text (one level)."""
        _check_jinja(text, path)
        other = _ANY_TEXT_INCLUDE.search(_TEXT_INCLUDE.sub(_blank, text))
        if other:
            raise TemplateError(
                'write includes as {% include "_name.txt" %} with a literal file name',
                path,
                _line_of(text, other.start()),
            )

        def expand(match: re.Match[str]) -> str:
            partial = self._partial(path, match.group(2), _line_of(text, match.start()))
            content = _read(partial)
            _check_jinja(content, partial)
            if _ANY_TEXT_INCLUDE.search(content):
                raise TemplateError("a partial may not include another file", partial)
            return content

        return _TEXT_INCLUDE.sub(expand, text)

    # -- compiling -------------------------------------------------------------------

    def compile(self, name: str, locale: str) -> CompiledTemplate:
        """The template compiled to HTML; reused while no file it is made of changes."""
        source = self.source(name, locale)
        digest = source.hash
        key = (source.name, source.locale)
        with self._lock:
            cached = self._compiled.get(key)
        if cached is not None and cached.hash == digest:
            return cached
        compiled = CompiledTemplate(
            name=source.name,
            locale=source.locale,
            html=_compile_mjml(source, digest),
            text=source.text,
            hash=digest,
        )
        with self._lock:
            self._compiled[key] = compiled
        return compiled


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    except OSError as exc:
        raise TemplateError(f"cannot read the file ({exc.strerror})", path) from exc


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _blank(match: re.Match[str]) -> str:
    """The same number of characters and newlines, without any markup in them."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _markup_only(mjml: str) -> str:
    """``mjml`` with Jinja tags and comments blanked out, offsets unchanged."""
    return _HTML_COMMENT.sub(_blank, _JINJA_TAG.sub(_blank, mjml))


def _mjml_includes(mjml: str, path: Path) -> list[tuple[str, int]]:
    """The ``path`` of each ``<mj-include>``, with its line."""
    found: list[tuple[str, int]] = []
    markup = _markup_only(mjml)
    for match in _MJ_TAG.finditer(markup):
        if match.group(1) or match.group(2) != "mj-include":
            continue
        line = _line_of(markup, match.start())
        attr = _INCLUDE_PATH.search(match.group(3))
        if attr is None or not attr.group(2).strip():
            raise TemplateError(
                'write <mj-include path="_file.mjml" /> with a literal path', path, line
            )
        found.append((attr.group(2).strip(), line))
    return found


def _check_jinja(text: str, path: Path) -> None:
    try:
        tree = _SYNTAX.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"Jinja syntax: {exc.message}", path, exc.lineno) from exc
    for problem in filter_problems(tree):  # else it fails only at send time
        raise TemplateError(f"{problem.message} ({problem.hint})", path, problem.line)


def _check_structure(mjml: str, path: Path) -> None:
    """Every ``mj-`` tag known and properly nested: mjml-python silently drops the rest."""
    markup = _markup_only(mjml)
    stack: list[tuple[str, int]] = []
    for match in _MJ_TAG.finditer(markup):
        closing, tag, _attrs, self_closing = match.groups()
        line = _line_of(markup, match.start())
        if tag not in MJML_TAGS:
            close = difflib.get_close_matches(tag, MJML_TAGS, n=1)
            hint = f"; did you mean <{close[0]}>?" if close else ""
            raise TemplateError(f"unknown MJML element <{tag}>{hint}", path, line)
        if self_closing:
            continue
        if not closing:
            stack.append((tag, line))
        elif not stack:
            raise TemplateError(f"</{tag}> closes an element that was never opened", path, line)
        elif stack[-1][0] != tag:
            open_tag, open_line = stack[-1]
            raise TemplateError(
                f"</{tag}> found while <{open_tag}> (line {open_line}) is still open", path, line
            )
        else:
            stack.pop()
    if stack:
        tag, line = stack[-1]
        raise TemplateError(f"<{tag}> is never closed", path, line)


@dataclass
class _Protected:
    """One file with its Jinja tags swapped out, and how to find a place in the original."""

    path: Path
    original: str
    text: str
    spans: list[tuple[int, int, int, int]]
    """Per tag: start and end in ``text``, start and end in ``original``."""

    def line_at(self, start: int, end: int) -> tuple[int, str | None]:
        """The original line of a byte range in ``text`` (MRML counts bytes), and the
        Jinja tag inside that range if there is one."""
        data = self.text.encode()
        first = len(data[:start].decode("utf-8", "ignore"))
        last = len(data[:end].decode("utf-8", "ignore"))
        shift = 0
        for text_start, text_end, orig_start, orig_end in self.spans:
            if text_start >= max(last, first + 1):
                break
            if text_end > first:
                return _line_of(self.original, orig_start), self.original[orig_start:orig_end]
            shift = orig_end - text_end
        return _line_of(self.original, first + shift), None


@dataclass
class _Tokens:
    """Jinja tags swapped for inert words while MJML compiles, and where each came from."""

    prefix: str
    tags: list[tuple[str, Path, int]] = field(default_factory=list)

    def protect(self, original: str, path: Path) -> _Protected:
        pieces: list[str] = []
        spans: list[tuple[int, int, int, int]] = []
        last = length = 0
        for match in _JINJA_TAG.finditer(original):
            self.tags.append((match.group(0), path, _line_of(original, match.start())))
            token = f"{self.prefix}{len(self.tags) - 1}X"
            before = original[last : match.start()]
            pieces += [before, token]
            length += len(before)
            spans.append((length, length + len(token), match.start(), match.end()))
            length += len(token)
            last = match.end()
        pieces.append(original[last:])
        return _Protected(path, original, "".join(pieces), spans)

    def restore(self, html: str) -> str:
        """Put every tag back; a tag MJML dropped is an error at its own line."""
        pattern = re.compile(re.escape(self.prefix) + r"(\d+)X")
        seen = {int(i) for i in pattern.findall(html)}
        for index, (tag, path, line) in enumerate(self.tags):
            if index not in seen:
                raise TemplateError(
                    f"MJML dropped the Jinja tag {tag!r}: put Jinja inside mj-text, mj-button,"
                    " mj-table or mj-raw content, or in href/src/alt attributes",
                    path,
                    line,
                )
        return pattern.sub(lambda m: self.tags[int(m.group(1))][0], html)


_MRML_PLACE = re.compile(r'(?:root template|template from "([^"]*)") at position (\d+):(\d+)')


def _mjml_error(
    exc: Exception, body: _Protected, partials: Mapping[str, _Protected]
) -> TemplateError:
    """mjml-python's error as a :class:`TemplateError` at the file and line it names."""
    message = str(exc)
    place = _MRML_PLACE.search(message)
    if place is None:
        include = re.search(r'template from "([^"]*)"', message)
        culprit = partials.get(include.group(1), body) if include else body
        return TemplateError(f"MJML: {message}", culprit.path)
    culprit = partials.get(place.group(1), body) if place.group(1) else body
    line, tag = culprit.line_at(int(place.group(2)), int(place.group(3)))
    if tag is not None:
        return TemplateError(
            f"MJML does not accept the Jinja tag {tag!r} here: Jinja belongs in text content"
            " (mj-text, mj-button, mj-table, mj-raw) or in href/src/alt attributes",
            culprit.path,
            line,
        )
    return TemplateError(f"MJML: {message}", culprit.path, line)


def _compile_mjml(source: TemplateSource, digest: str) -> str:
    """MJML to HTML with every Jinja tag intact, or a :class:`TemplateError` naming the file."""
    path = source.mjml_path
    _check_jinja(source.mjml, path)
    _check_structure(source.mjml, path)
    tokens = _Tokens(prefix=f"JINJA{digest[:12]}N")
    partials: dict[str, _Protected] = {}
    for include, content in source.includes.items():
        partial = path.parent / include
        _check_jinja(content, partial)
        _check_structure(content, partial)
        partials[include] = tokens.protect(content, partial)
    body = tokens.protect(source.mjml, path)

    def load(path: str) -> str:
        # Only what source() read (and hashed) is compiled: no second, newer read.
        if path not in partials:
            raise TemplateError(f"included file {path!r} was not found", source.mjml_path)
        return partials[path].text

    try:
        html = mjml2html(body.text, include_loader=load, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises a bare ValueError with the parser's words
        raise _mjml_error(exc, body, partials) from exc
    html = tokens.restore(html)
    try:
        _SYNTAX.parse(html)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"after MJML compilation the Jinja no longer parses ({exc.message}):"
            " keep each {% if %}/{% for %} block inside one mj-text, mj-table or mj-raw",
            path,
        ) from exc
    return html
