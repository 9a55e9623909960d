"""YAML that remembers where everything came from, so every problem can name its line:col.

PyYAML composes a node tree carrying marks; :func:`load` turns it into plain Python values
(:class:`Map`, :class:`Seq`, scalars) whose containers keep the position of each key and
value. Only ``true``/``false`` are booleans (``yes``, ``no``, ``on``, ``off`` stay strings,
as a marketer writing ``rsvp: yes`` means), and a key repeated in a mapping is an error.

The files are written by people and may come from anywhere, so the parser's cost is bounded
by the file's size: anchors and aliases (``&name`` / ``*name``, with which a 3 KB "billion
laughs" file expands to gigabytes) are refused as the parser meets them, before any node is
built, and so is nesting deeper than :data:`~campaigns.defaults.MAX_SOURCE_DEPTH`. A file
larger than :data:`~campaigns.defaults.MAX_SOURCE_BYTES` is refused by :func:`read` before
it is read whole, and a text that large by :func:`load`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from campaigns import defaults


class _Mark(Protocol):
    """Where PyYAML saw something: 0-based, in its pure-Python and its C flavour alike."""

    line: int
    column: int


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column."""

    line: int
    col: int

    @classmethod
    def of(cls, node: Node) -> Pos:
        return cls.at(node.start_mark)

    @classmethod
    def at(cls, mark: _Mark | None) -> Pos:
        return cls(mark.line + 1, mark.column + 1) if mark is not None else cls(1, 1)


class Map(dict[str, Any]):
    """A mapping that knows the position of itself, each key and each value."""

    pos: Pos
    key_pos: dict[str, Pos]
    value_pos: dict[str, Pos]

    def at(self, key: str) -> Pos:
        """Where the value of ``key`` starts (or the mapping itself when the key is missing)."""
        return self.value_pos.get(key, self.pos)

    def key_at(self, key: str) -> Pos:
        return self.key_pos.get(key, self.pos)


class Seq(list[Any]):
    """A list that knows the position of itself and of each item."""

    pos: Pos
    item_pos: list[Pos]

    def at(self, index: int) -> Pos:
        return self.item_pos[index] if 0 <= index < len(self.item_pos) else self.pos


Value = Map | Seq | str | int | float | bool | bytes | date | datetime | None
"""What :func:`load` gives: a positioned mapping or list, or a scalar of YAML's core types."""


class YamlProblem(Exception):
    """The text is not YAML, or breaks a rule of ours (duplicate key, non-string key)."""

    def __init__(self, pos: Pos, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message
        self.hint = hint


_NO_ANCHORS = (
    "write the value out in full where it is needed: anchors and aliases (&name / *name)"
    " are not allowed in journey, segments and links files"
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false), without anchors and aliases, and
    with a nesting limit.

    The checks sit in :meth:`compose_node`, which sees each node's first event before the
    node is built: an alias is refused before it could point at anything, so nothing is
    ever expanded, and parsing stops at the first offence.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise YamlProblem(
                Pos.at(event.start_mark),
                f"YAML alias '*{event.anchor}' is not allowed",
                _NO_ANCHORS,
            )
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise YamlProblem(
                Pos.at(event.start_mark),
                f"YAML anchor '&{event.anchor}' is not allowed",
                _NO_ANCHORS,
            )
        if self._depth >= defaults.MAX_SOURCE_DEPTH:
            raise YamlProblem(
                Pos.at(event.start_mark),
                f"nested more than {defaults.MAX_SOURCE_DEPTH} levels deep",
                "journeys, segments and links need a few levels of lists and mappings;"
                " check the brackets and the indentation",
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _too_large(limit: int) -> YamlProblem:
    return YamlProblem(
        Pos(1, 1),
        f"the file is larger than {limit:,} bytes",
        "journey, segments and links files are a few KB: check that this is the right file,"
        " or split it into several journeys",
    )


def read(path: Path, limit: int = defaults.MAX_SOURCE_BYTES) -> str:
    """The UTF-8 text of the file at ``path``; :class:`YamlProblem` at 1:1 if it is larger than
    ``limit`` bytes, found out having read at most one byte more than that.

    Raises what :meth:`Path.read_text` raises (``OSError``, ``UnicodeDecodeError``), and reads
    line ends as it does (CRLF and CR become LF): deploy stores and hashes the text, and a
    file deployed before must hash the same.
    """
    with path.open("rb") as file:
        data = file.read(limit + 1)  # not stat(): a FIFO or /dev/zero has no honest size
    if len(data) > limit:
        raise _too_large(limit)
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def load(text: str) -> Value:
    """Parse one YAML document into positioned values; raise :class:`YamlProblem`."""
    limit = defaults.MAX_SOURCE_BYTES
    # A stored version or an API body never went through read(); the character count
    # settles most texts without encoding them.
    if len(text) > limit or (
        len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit
    ):
        raise _too_large(limit)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(mark.line + 1, mark.column + 1) if mark else Pos(1, 1)
        message = (exc.problem or exc.context or "invalid YAML").strip()
        hint = None
        if "\t" in text and "found character '\\t'" in message:
            hint = "indent with spaces, not tabs"
        elif "mapping values are not allowed" in message:
            hint = "put a space after ':' in 'key: value', or quote a value that contains ': '"
        raise YamlProblem(pos, f"YAML syntax error: {message}", hint) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most controls)
        before = text[: exc.position]
        pos = Pos(before.count("\n") + 1, exc.position - before.rfind("\n"))
        raise YamlProblem(
            pos,
            f"YAML error: the character U+{exc.character:04X} is not allowed"
            if isinstance(exc.character, int)
            else "YAML error: a character is not allowed",
            "delete it, or write it as an escape in a double-quoted string",
        ) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Pos(1, 1), f"YAML error: {_one_line(str(exc))}") from None
    if node is None:
        return None
    return _convert(node)


def _convert(node: Node) -> Value:
    if isinstance(node, MappingNode):
        result = Map()
        result.pos, result.key_pos, result.value_pos = Pos.of(node), {}, {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem(Pos.of(key_node), "merge keys ('<<') are not supported")
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(
                    Pos.of(key_node), "a key must be a plain word, not a list or mapping"
                )
            key = str(key_node.value)
            if key in result:
                first = result.key_pos[key]
                raise YamlProblem(
                    Pos.of(key_node),
                    f"duplicate key '{key}'",
                    f"it is already set at line {first.line}; keep one",
                )
            result[key] = _convert(value_node)
            result.key_pos[key] = Pos.of(key_node)
            result.value_pos[key] = Pos.of(value_node)
        return result
    if isinstance(node, SequenceNode):
        seq = Seq(_convert(item) for item in node.value)
        seq.pos, seq.item_pos = Pos.of(node), [Pos.of(item) for item in node.value]
        return seq
    assert isinstance(node, ScalarNode)
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    # One scalar, through PyYAML's constructors: on an explicit tag whose value does not fit
    # it, they fail with whatever their parsing hits (AttributeError for ``!!timestamp soon``,
    # IndexError for an empty ``!!int``), not only YAMLError and ValueError.
    except Exception as exc:
        if isinstance(exc, yaml.YAMLError | ValueError | OverflowError):
            reason = (exc.problem if isinstance(exc, yaml.MarkedYAMLError) else None) or str(exc)
        else:
            reason = f"not a value of type {node.tag.replace('tag:yaml.org,2002:', '!!')}"
        value = node.value if len(node.value) <= 40 else node.value[:40] + "…"
        raise YamlProblem(Pos.of(node), f"bad value {value!r}: {_one_line(reason)}") from None


def _one_line(text: str, width: int = 120) -> str:
    """The first line of an exception's text, cut to ``width``: a problem is one line."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def describe(value: object) -> str:
    """How a value reads in a message: 'a list', 'a mapping', 'true/false', 'int 3'."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return f"{type(value).__name__} {value!r}"
