"""Reading YAML text into plain data, keeping where every key and value stood.

The loader is PyYAML's safe loader with YAML 1.2's scalars: only ``true``/``false`` are
booleans (``on:``, ``yes``, ``no`` stay strings: a branch's ``on:`` key must not turn
into ``True``), numbers have no sexagesimal or octal forms, and dates stay strings.
Duplicate keys are errors (PyYAML would keep the last one silently), and aliases may not
expand a document beyond :data:`MAX_NODES` nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from orchestrate.yaml._errors import Problem

MAX_NODES = 100_000
"""Most nodes a document may have once its aliases are expanded."""

MAX_BYTES = 1_000_000
"""Largest YAML text accepted."""

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 core-schema scalars."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$|^0x[0-9a-fA-F]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^[-+]?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)$"
        r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass
class Document:
    """A parsed YAML document: its data, and its node tree for positions."""

    source: str
    data: Any
    root: yaml.Node
    keys: dict[int, dict[Any, tuple[yaml.Node, yaml.Node]]]  # id(mapping node) -> key -> (key node, value node)

    def locate(self, loc: Sequence[Any], *, key: bool = False, offset: int | None = None) -> Position:
        """Where ``loc`` (a path of keys and indexes) points; ``key``: at the key rather than its value.

        Path items that are not in the document (union tags added by the schema) are
        skipped; a path that leaves the document points at the deepest node reached.
        ``offset`` (1-based, within a one-line scalar) moves the column into the text.
        """
        node: yaml.Node = self.root
        key_node: yaml.Node | None = None
        for item in loc:
            child = self._child(node, item)
            if child is None:
                continue
            key_node, node = child
        target = key_node if key and key_node is not None else node
        mark = target.start_mark
        column = mark.column + 1
        if offset is not None and target is node and isinstance(node, yaml.ScalarNode):
            if node.start_mark.line == node.end_mark.line and node.style in (None, '"', "'"):
                column += offset - 1 + (1 if node.style in ('"', "'") else 0)
        return Position(mark.line + 1, column)

    def _child(self, node: yaml.Node, item: Any) -> tuple[yaml.Node, yaml.Node] | None:
        if isinstance(node, yaml.MappingNode):
            pairs = self.keys.get(id(node), {})
            return pairs.get(item) if _hashable(item) else None
        if isinstance(node, yaml.SequenceNode) and isinstance(item, int) and not isinstance(item, bool):
            if 0 <= item < len(node.value):
                child = node.value[item]
                return child, child
        return None


def _hashable(item: Any) -> bool:
    try:
        hash(item)
    except TypeError:
        return False
    return True


def parse(text: str, source: str) -> Document:
    """Parse one YAML document.

    Raises:
        YamlDefinitionError: malformed YAML, several documents, duplicate keys, keys
            that are not scalars, or a document too large.
    """
    from orchestrate.yaml._errors import YamlDefinitionError

    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise YamlDefinitionError([Problem(source, 1, 1, "", f"the file is larger than {MAX_BYTES} bytes")])
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise YamlDefinitionError([Problem(source, 1, 1, "", "the file is empty: expected a workflow mapping")])
        problems, keys = _check(root, source, loader)
        if problems:
            raise YamlDefinitionError(problems)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlDefinitionError([Problem(source, line, column, "", f"malformed YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise YamlDefinitionError([Problem(source, 1, 1, "", f"malformed YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return Document(source, data, root, keys)


def _check(
    root: yaml.Node, source: str, loader: _Loader
) -> tuple[list[Problem], dict[int, dict[Any, tuple[yaml.Node, yaml.Node]]]]:
    """Duplicate and non-scalar keys, and the alias expansion bound; index every mapping's keys."""
    problems: list[Problem] = []
    keys: dict[int, dict[Any, tuple[yaml.Node, yaml.Node]]] = {}
    seen = 0
    for node in _walk(root):
        seen += 1
        if seen > MAX_NODES:
            mark = node.start_mark
            problems.append(
                Problem(
                    source, mark.line + 1, mark.column + 1, "", f"the document expands to more than {MAX_NODES} nodes"
                )
            )
            break
        if not isinstance(node, yaml.MappingNode) or id(node) in keys:
            continue
        pairs: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            mark = key_node.start_mark
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(source, mark.line + 1, mark.column + 1, "", "keys must be plain scalars"))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node)
            if not _hashable(key):
                problems.append(Problem(source, mark.line + 1, mark.column + 1, "", "keys must be plain scalars"))
                continue
            if key in pairs:
                earlier = pairs[key][0].start_mark
                problems.append(
                    Problem(
                        source,
                        mark.line + 1,
                        mark.column + 1,
                        "",
                        f"duplicate key {key!r} (first at line {earlier.line + 1}); a key may appear once",
                    )
                )
                continue
            pairs[key] = (key_node, value_node)
        keys[id(node)] = pairs
    return problems, keys


def _walk(root: yaml.Node) -> Iterator[yaml.Node]:
    """Every node, aliases followed each time they are used (so expansion is counted)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in reversed(node.value):
                stack.append(value_node)
                stack.append(key_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
