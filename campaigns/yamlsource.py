"""YAML that remembers where everything came from, so every problem can name its line:col.

PyYAML composes a node tree carrying marks; :func:`load` turns it into plain Python values
(:class:`Map`, :class:`Seq`, scalars) whose containers keep the position of each key and
value. Only ``true``/``false`` are booleans (``yes``, ``no``, ``on``, ``off`` stay strings,
as a marketer writing ``rsvp: yes`` means), and a key repeated in a mapping is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column."""

    line: int
    col: int

    @classmethod
    def of(cls, node: Node) -> Pos:
        return cls(node.start_mark.line + 1, node.start_mark.column + 1)


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


class YamlProblem(Exception):
    """The text is not YAML, or breaks a rule of ours (duplicate key, non-string key)."""

    def __init__(self, pos: Pos, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message
        self.hint = hint


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false."""


_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"] for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def load(text: str) -> Any:
    """Parse one YAML document into positioned values; raise :class:`YamlProblem`."""
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
    except yaml.YAMLError as exc:  # reader errors: bad characters, encodings
        raise YamlProblem(Pos(1, 1), f"YAML error: {exc}") from None
    if node is None:
        return None
    return _convert(node)


def _convert(node: Node) -> Any:
    if isinstance(node, MappingNode):
        result = Map()
        result.pos, result.key_pos, result.value_pos = Pos.of(node), {}, {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem(Pos.of(key_node), "merge keys ('<<') are not supported")
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(Pos.of(key_node), "a key must be a plain word, not a list or mapping")
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
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise YamlProblem(Pos.of(node), f"bad value {node.value!r}: {exc}") from None


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
