"""Write docs/api.md, the API reference, from the public names' signatures and docstrings.

    python scripts/api_reference.py            # rewrite docs/api.md
    python scripts/api_reference.py --check    # exit 1 if docs/api.md is out of date
    python scripts/api_reference.py --report   # list public names lacking a docstring or a return annotation

Every module in ``MODULES`` is imported; its public names are its ``__all__`` (or, without
one, the classes and functions it defines). A name is documented once, in the first module
that exports it; later modules link to it. Classes list their public methods and
properties, including those inherited from private bases. Google-style docstring sections
(``Args:``, ``Returns:``, ``Raises:``...) become Markdown lists, reST roles and literal
blocks become code. Only the standard library is used, and the output is deterministic:
no memory addresses, sets sorted, members in definition order.
"""

from __future__ import annotations

import argparse
import ast
import enum
import functools
import importlib
import inspect
import itertools
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"

MODULES = (
    "orchestrate",
    "orchestrate.errors",
    "orchestrate.policies",
    "orchestrate.store",
    "orchestrate.models",
    "orchestrate.agents",
    "orchestrate.review",
    "orchestrate.testing",
    "orchestrate.policies_shared",
    "orchestrate.observe",
    "orchestrate.observe.prometheus",
    "orchestrate.observe.otel",
    "orchestrate.observe.monitors",
    "orchestrate.cli",
    "orchestrate.yaml",
)

SECTIONS = {
    "Args": "list",
    "Arguments": "list",
    "Parameters": "list",
    "Attributes": "list",
    "Raises": "list",
    "Returns": "text",
    "Return": "text",
    "Yields": "text",
    "Note": "text",
    "Notes": "text",
    "Warning": "text",
    "Example": "code",
    "Examples": "code",
}
LINE_WIDTH = 100


# ---------------------------------------------------------------------------------------------
# What is public


@dataclass
class Entry:
    """One public name of one module."""

    module: str
    name: str
    obj: object
    documented_in: str | None = None  # the module that documents it, when not this one


@dataclass
class Report:
    """Public names without a docstring or a return annotation."""

    no_docstring: list[str] = field(default_factory=list)
    no_return_annotation: list[str] = field(default_factory=list)


def public_names(module: ModuleType) -> list[str]:
    """The module's ``__all__``, or the classes and functions it defines, sorted."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and obj.__module__ == module.__name__
        ]
    return sorted((n for n in names if n != "__version__"), key=lambda n: (n.lower(), n))


def collect(modules: tuple[str, ...] = MODULES) -> dict[str, list[Entry]]:
    """Each module's public names, each marked with the module that documents it."""
    first: dict[int, str] = {}
    collected: dict[str, list[Entry]] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        entries = [Entry(module_name, name, getattr(module, name)) for name in public_names(module)]
        # A class or function is described under its own name; other names are aliases.
        for entry in sorted(entries, key=lambda e: not _is_canonical(e)):
            if not _identity_matters(entry.obj):
                continue
            key = id(entry.obj)
            if key in first:
                entry.documented_in = first[key]
            else:
                first[key] = f"{module_name}.{entry.name}"
        collected[module_name] = entries
    return collected


def _is_canonical(entry: Entry) -> bool:
    return getattr(entry.obj, "__name__", entry.name) == entry.name


def _identity_matters(obj: object) -> bool:
    # Classes, functions and module-level singletons are the same object wherever they are
    # exported; plain values (strings, numbers) only happen to be equal.
    return not isinstance(obj, str | int | float | bool | type(None))


# ---------------------------------------------------------------------------------------------
# Signatures


class _Text:
    """Renders as the given text inside ``inspect.Signature.__str__``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def value_repr(value: object) -> str:
    """``repr(value)``, made deterministic and short."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, set | frozenset):
        inner = ", ".join(sorted(value_repr(v) for v in value))
        return f"{type(value).__name__}({{{inner}}})" if value else f"{type(value).__name__}()"
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
        return value.__qualname__
    if isinstance(value, tuple):
        items = [value_repr(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    text = _ADDRESS.sub("", repr(value))
    return text if len(text) <= 60 else f"<{type(value).__name__}>"


def annotation_text(annotation: object) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__qualname__ if annotation.__module__ != "builtins" else annotation.__name__
    return inspect.formatannotation(annotation).replace("typing.", "")


def signature_text(obj: Callable[..., object], *, drop_first: bool = False) -> tuple[str, str | None] | None:
    """``(parameters, return annotation)`` of ``obj``, or ``None`` when it has no signature."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if drop_first and params:
        params = params[1:]
    shown = []
    for p in params:
        changes: dict[str, object] = {}
        if p.annotation is not p.empty:
            changes["annotation"] = _Text(annotation_text(p.annotation))
        if p.default is not p.empty:
            changes["default"] = _Text(value_repr(p.default))
        shown.append(p.replace(**changes))  # type: ignore[arg-type]
    text = str(sig.replace(parameters=shown, return_annotation=inspect.Signature.empty))
    returns = None if sig.return_annotation is sig.empty else annotation_text(sig.return_annotation)
    return text, returns


def layout(prefix: str, params: str, suffix: str = "") -> str:
    """``prefix(params)suffix`` on one line, or one parameter per line when too long."""
    one_line = f"{prefix}{params}{suffix}"
    if len(one_line) <= LINE_WIDTH or params in ("()", ""):
        return one_line
    inner = params[1:-1]
    parts = _split_top_level(inner)
    body = "".join(f"    {part},\n" for part in parts)
    return f"{prefix}(\n{body}){suffix}"


def _split_top_level(text: str) -> list[str]:
    parts, depth, current, quote = [], 0, [], ""
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


# ---------------------------------------------------------------------------------------------
# Docstrings to Markdown

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
_DOUBLE = re.compile(r"``(.+?)``")
_ITEM = re.compile(r"^(\*{0,2}[\w.]+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_TABLE_RULE = re.compile(r"^=+(\s+=+)+\s*$")


def _inline(text: str) -> str:
    text = _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    return _DOUBLE.sub(r"`\1`", text)


def _escape(text: str) -> str:
    """Escape what Markdown would take for HTML, outside code spans."""
    pieces = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else re.sub(r"<(?=[A-Za-z/!])", "&lt;", p) for p in pieces)


def _code(lines: list[str]) -> list[str]:
    body = textwrap.dedent("\n".join(lines)).strip("\n")
    return ["```text", *body.splitlines(), "```"] if body else []


def _blocks(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Split ``lines`` at the lines indented like the first: ``(index, [line, indented...])``."""
    i = 0
    while i < len(lines):
        block = [lines[i]]
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith(" ")):
            block.append(lines[j])
            j += 1
        yield i, block
        i = j


def docstring_markdown(doc: str | None) -> list[str]:
    """A cleaned docstring as Markdown lines."""
    if not doc:
        return []
    lines = _inline(inspect.cleandoc(doc)).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        header = re.match(r"^(\w+(?: \w+)?):\s*$", line)
        if header and header.group(1) in SECTIONS:
            kind = SECTIONS[header.group(1)]
            j = i + 1
            body: list[str] = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith(" ")):
                body.append(lines[j])
                j += 1
            while body and not body[-1].strip():
                body.pop()
            out += ["", f"**{header.group(1)}:**", ""]
            body = textwrap.dedent("\n".join(body)).splitlines()
            if kind == "code":
                out += _code(body)
            elif kind == "text":
                out.append(_escape(" ".join(b.strip() for b in body if b.strip())))
            else:
                for _, block in _blocks([b for b in body if b.strip()]):
                    text = " ".join(b.strip() for b in block)
                    item = _ITEM.match(text)
                    if item:
                        name, kind_text, rest = item.groups()
                        kind_text = f" {kind_text}" if kind_text else ""
                        out.append(f"- `{name}`{kind_text}: {_escape(rest)}")
                    else:
                        out.append(f"- {_escape(text)}")
            out.append("")
            i = j
            continue
        if line.rstrip().endswith("::"):
            lead = line.rstrip()[:-2].rstrip()
            if lead:
                out.append(_escape(lead + ":"))
            j = i + 1
            block = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith(" ")):
                block.append(lines[j])
                j += 1
            out += ["", *_code(block), ""]
            i = j
            continue
        if _TABLE_RULE.match(line):
            j = i
            block = []
            while j < len(lines) and lines[j].strip():
                block.append(lines[j])
                j += 1
            out += ["", *_code(block), ""]
            i = j
            continue
        out.append(_escape(line) if line.strip() else "")
        i += 1
    while out and not out[-1]:
        out.pop()
    while out and not out[0]:
        out.pop(0)
    # one blank line at most between blocks
    squeezed: list[str] = []
    for line in out:
        if line or (squeezed and squeezed[-1]):
            squeezed.append(line)
    return squeezed


def summary(doc: str | None) -> str:
    """The first sentence-line of a docstring, for the index tables."""
    if not doc:
        return ""
    first = inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ")
    first = _escape(_inline(first)).rstrip(":").replace("|", "\\|")
    return first


# ---------------------------------------------------------------------------------------------
# Source facts that inspect does not keep: attribute docstrings, enum member comments


@functools.cache
def _module_source(module_name: str) -> str:
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return ""


@dataclass(frozen=True)
class Assignment:
    """``NAME[: annotation] = value`` at the top of a module, and the string literal under it."""

    value: str
    annotation: str | None
    doc: str | None


@functools.cache
def assignments(module_name: str) -> dict[str, Assignment]:
    """The module's top-level assignments to one name, by name."""
    source = _module_source(module_name)
    if not source:
        return {}
    found: dict[str, Assignment] = {}
    body = ast.parse(source).body
    for node, after in itertools.pairwise([*body, None]):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, annotation = node.targets[0].id, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, annotation = node.target.id, ast.get_source_segment(source, node.annotation)
        else:
            continue
        doc = None
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            doc = after.value.value
        found[target] = Assignment(ast.get_source_segment(source, node.value) or "", annotation, doc)
    return found


@functools.cache
def imported_from(module_name: str, name: str) -> str | None:
    """The module that ``module_name`` imports ``name`` from (``from x import name``), if any."""
    source = _module_source(module_name)
    if not source:
        return None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if any((alias.asname or alias.name) == name for alias in node.names):
                return node.module
    return None


def assignment_of(module_name: str, name: str) -> Assignment | None:
    """Where ``name``, exported by ``module_name``, is assigned: following its imports."""
    for _ in range(5):
        found = assignments(module_name).get(name)
        if found is not None:
            return found
        origin = imported_from(module_name, name)
        if origin is None or not origin.startswith("orchestrate"):
            return None
        module_name = origin
    return None


def member_comments(cls: type) -> dict[str, str]:
    """Trailing ``# comments`` of an enum's members, by member name."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = re.findall(r"^\s+([A-Z_][A-Z0-9_]*)\s*=\s*[^#\n]*#\s*(.+)$", source, re.M)
    return {name: comment.strip() for name, comment in found}


# ---------------------------------------------------------------------------------------------
# Rendering


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading (before telling equal ones apart)."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


_LINK = re.compile(r"#@([\w.]+)@")


def link(heading: str) -> str:
    """A link to the heading ``heading``, resolved by :func:`resolve_links`."""
    return f"#@{heading}@"


def resolve_links(lines: list[str]) -> list[str]:
    """Give each heading its GitHub anchor (``-1``, ``-2``... for repeats) and point the links at them."""
    anchors: dict[str, str] = {}
    counts: dict[str, int] = {}
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip()
        base = slug(text)
        count = counts.get(base, 0)
        counts[base] = count + 1
        anchors.setdefault(text, base if count == 0 else f"{base}-{count}")
    return [_LINK.sub(lambda m: f"#{anchors[m.group(1)]}", line) for line in lines]


def own_doc(obj: object) -> str | None:
    """The docstring written for ``obj`` itself (not inherited, not generated by dataclass or Enum)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if not isinstance(doc, str):
            return None
        generated = doc.startswith(f"{obj.__name__}(") or doc in ("An enumeration.", "")
        return None if generated else doc
    if isinstance(obj, property):
        return obj.__doc__
    doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) else None


def inherited_doc(cls: type, name: str) -> str | None:
    """The docstring of member ``name`` of ``cls``, or of the member it overrides."""
    for owner in cls.__mro__:
        attr = owner.__dict__.get(name)
        if isinstance(attr, property):
            attr = attr.fget
        elif isinstance(attr, functools.cached_property):
            attr = attr.func
        elif isinstance(attr, staticmethod | classmethod):
            attr = attr.__func__
        doc = getattr(attr, "__doc__", None) if attr is not None else None
        if isinstance(doc, str) and doc.strip():
            return doc
    return None


def is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


def class_bases(cls: type) -> list[str]:
    bases = []
    for base in cls.__bases__:
        if base is object or base is typing.Generic:
            continue
        module = base.__module__
        if module == "builtins" or module.startswith("orchestrate"):
            bases.append(base.__name__)
        elif module == "typing" and base.__name__ == "Protocol":
            bases.append("Protocol")
        else:
            bases.append(f"{module}.{base.__qualname__}")
    return bases


def members(cls: type, public: set[int]) -> list[tuple[str, object]]:
    """Public methods and properties of ``cls``: its own, then those of private bases."""
    seen: set[str] = set()
    found: list[tuple[str, object]] = []
    for owner in cls.__mro__:
        if owner is object or not owner.__module__.startswith("orchestrate"):
            continue
        if owner is not cls and id(owner) in public:
            continue  # documented under its own name
        for name, attr in owner.__dict__.items():
            if name.startswith("_") or name in seen:
                continue
            if isinstance(attr, staticmethod | classmethod | property | functools.cached_property) or (
                inspect.isfunction(attr)
            ):
                seen.add(name)
                found.append((name, attr))
    return found


class Renderer:
    """Builds the page; collects what is missing on the way."""

    def __init__(self, collected: dict[str, list[Entry]]) -> None:
        self.collected = collected
        self.report = Report()
        self.public = {id(e.obj) for entries in collected.values() for e in entries if inspect.isclass(e.obj)}
        self.lines: list[str] = []

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def page(self) -> str:
        self.emit(
            "# API reference",
            "",
            "<!-- Generated by scripts/api_reference.py from the docstrings: do not edit by hand. -->",
            "",
            "Every public name of orchestrate, with its signature and docstring, generated from the",
            "code by `python scripts/api_reference.py` (a test checks that this page is up to date).",
            "Each name is described in the first module below that exports it; the other modules",
            "that export it link there.",
            "",
        )
        for module_name in self.collected:
            self.emit(f"- [`{module_name}`]({link(module_name)})")
        for module_name, entries in self.collected.items():
            self.module(module_name, entries)
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(resolve_links(self.lines)) + "\n"

    def module(self, module_name: str, entries: list[Entry]) -> None:
        module = sys.modules[module_name]
        self.emit("", f"## {module_name}", "")
        intro = docstring_markdown(module.__doc__)
        if intro:
            self.emit(*intro, "")
        self.emit("| name | |", "|---|---|")
        for entry in entries:
            here = entry.documented_in is None or not _is_canonical(entry)
            target = f"{module_name}.{entry.name}" if here else entry.documented_in
            doc = self.doc_of(entry)
            self.emit(f"| [`{entry.name}`]({link(target)}) | {summary(doc)} |")
        for entry in entries:
            if entry.documented_in is None:
                self.entry(entry)
            elif not _is_canonical(entry):
                self.alias(entry)

    def alias(self, entry: Entry) -> None:
        full = f"{entry.module}.{entry.name}"
        target = entry.documented_in or ""
        self.emit("", f"### {full}", "")
        self.emit("```text", f"{entry.name} = {getattr(entry.obj, '__name__', '')}", "```", "")
        self.emit(f"Another name of [`{target.rsplit('.', 1)[-1]}`]({link(target)}).", "")
        self.docstring(full, self.doc_of(entry))

    def doc_of(self, entry: Entry) -> str | None:
        obj = entry.obj
        if not _is_canonical(entry):
            return self.attribute_doc(entry)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
            return own_doc(obj)
        doc = self.attribute_doc(entry)
        if doc:
            return doc
        doc = getattr(obj, "help", None)  # a click command's help text
        if isinstance(doc, str):
            return doc
        return own_doc(type(obj)) if type(obj).__module__.startswith("orchestrate") else None

    def attribute_doc(self, entry: Entry) -> str | None:
        """The string literal under ``NAME = ...`` where the name is assigned."""
        found = assignment_of(entry.module, entry.name)
        return found.doc if found is not None else None

    def entry(self, entry: Entry) -> None:
        full = f"{entry.module}.{entry.name}"
        obj = entry.obj
        self.emit("", f"### {full}", "")
        doc = self.doc_of(entry)
        if inspect.isclass(obj):
            self.klass(full, entry.name, obj, doc)
            return
        if inspect.isfunction(obj):
            self.function(full, entry.name, obj, doc, drop_first=False)
            return
        if isinstance(obj, typing.NewType):
            self.emit("```text", f"{entry.name} = NewType({entry.name!r}, {annotation_text(obj.__supertype__)})", "```")
        elif isinstance(obj, str | int | float | bool | type(None)):
            self.emit("```text", f"{entry.name} = {value_repr(obj)}", "```")
        else:
            self.emit("```text", self.declaration(entry), "```")
        self.emit("")
        self.docstring(full, doc)

    def declaration(self, entry: Entry) -> str:
        """How a name that is neither a class nor a function is declared."""
        found = assignment_of(entry.module, entry.name)
        is_alias = typing.get_origin(entry.obj) is not None
        if found is not None and is_alias:
            return f"{entry.name} = {found.value}"
        if found is not None and found.annotation and found.annotation != "Any":
            return f"{entry.name}: {found.annotation}"
        kind = type(entry.obj)
        ours = kind.__module__.startswith("orchestrate")
        return f"{entry.name}: {kind.__name__ if ours else f'{kind.__module__}.{kind.__qualname__}'}"

    def docstring(self, full: str, doc: str | None) -> None:
        body = docstring_markdown(doc)
        if body:
            self.emit(*body)
        else:
            self.report.no_docstring.append(full)
            self.emit("*No docstring.*")

    def function(self, full: str, name: str, fn: Callable[..., object], doc: str | None, *, drop_first: bool) -> None:
        prefix = "async def " if inspect.iscoroutinefunction(fn) else "def "
        sig = signature_text(fn, drop_first=drop_first)
        if sig is None:
            self.emit("```text", f"{prefix}{name}(...)", "```", "")
        else:
            params, returns = sig
            if returns is None:
                self.report.no_return_annotation.append(full)
            suffix = f" -> {returns}" if returns is not None else ""
            self.emit("```text", layout(f"{prefix}{name}", params, suffix), "```", "")
        self.docstring(full, doc)

    def klass(self, full: str, name: str, cls: type, doc: str | None) -> None:
        bases = class_bases(cls)
        if issubclass(cls, enum.Enum) or is_protocol(cls) or issubclass(cls, BaseException):
            sig = None if not issubclass(cls, BaseException) or "__init__" not in cls.__dict__ else signature_text(cls)
        else:
            sig = signature_text(cls)
        params = sig[0] if sig is not None else ""
        self.emit("```text", layout(f"class {name}", params), "```", "")
        if bases:
            links = []
            for base in bases:
                target = self.find(base)
                links.append(f"[`{base}`]({link(target)})" if target else f"`{base}`")
            self.emit(f"Bases: {', '.join(links)}", "")
        self.docstring(full, doc)
        if issubclass(cls, enum.Enum):
            comments = member_comments(cls)
            self.emit("", "| member | value | |", "|---|---|---|")
            for member in cls:
                note = _escape(comments.get(member.name, "")).replace("|", "\\|")
                self.emit(f"| `{member.name}` | `{member.value!r}` | {note} |")
        for member_name, attr in members(cls, self.public - {id(cls)}):
            self.member(full, name, cls, member_name, attr)

    def member(self, full: str, cls_name: str, cls: type, name: str, attr: object) -> None:
        qualified = f"{full}.{name}"
        self.emit("", f"#### {cls_name}.{name}", "")
        if isinstance(attr, property | functools.cached_property):
            getter = attr.fget if isinstance(attr, property) else attr.func
            sig = signature_text(getter) if getter is not None else None
            returns = sig[1] if sig else None
            if returns is None:
                self.report.no_return_annotation.append(qualified)
            kind = "property" if isinstance(attr, property) else "cached property"
            self.emit("```text", f"{name}: {returns or '...'}  # {kind}", "```", "")
            self.docstring(qualified, inherited_doc(cls, name))
            return
        if isinstance(attr, staticmethod):
            fn, drop, prefix = attr.__func__, False, "@staticmethod\n"
        elif isinstance(attr, classmethod):
            fn, drop, prefix = attr.__func__, True, "@classmethod\n"
        else:
            fn, drop, prefix = attr, True, ""
        doc = inherited_doc(cls, name)
        sig = signature_text(fn, drop_first=drop)
        keyword = "async def " if inspect.iscoroutinefunction(fn) else "def "
        if sig is None:
            self.emit("```text", f"{prefix}{keyword}{name}(...)", "```", "")
        else:
            params, returns = sig
            if returns is None:
                self.report.no_return_annotation.append(qualified)
            suffix = f" -> {returns}" if returns is not None else ""
            self.emit("```text", prefix + layout(f"{keyword}{name}", params, suffix), "```", "")
        self.docstring(qualified, doc)

    def find(self, name: str) -> str | None:
        """Where a class called ``name`` is documented, if it is public."""
        for module_name, entries in self.collected.items():
            for entry in entries:
                if entry.name == name and entry.documented_in is None and inspect.isclass(entry.obj):
                    return f"{module_name}.{name}"
        return None


def render() -> tuple[str, Report]:
    """The text of docs/api.md and what the docstrings lack."""
    renderer = Renderer(collect())
    return renderer.page(), renderer.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date, write nothing")
    parser.add_argument("--report", action="store_true", help="list names without a docstring or return annotation")
    args = parser.parse_args(argv)
    text, report = render()
    if args.report:
        for name in report.no_docstring:
            print(f"no docstring: {name}")
        for name in report.no_return_annotation:
            print(f"no return annotation: {name}")
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run `python scripts/api_reference.py`", file=sys.stderr)
            return 1
        return 0
    if not args.report:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
