"""``orchestrate validate``, ``orchestrate graph`` and ``orchestrate schema``; YAML targets.

A target is a YAML file (``flows/support.yaml``) or a Python target
(``path/to/file.py:NAME``, ``package.module:NAME``, see :mod:`orchestrate.cli.loading`).
:func:`load_target` loads either, so every command that takes a workflow can take a
YAML file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from orchestrate.cli._common import EXIT_OK, EXIT_USAGE
from orchestrate.cli.loading import canonical_target, load_workflow
from orchestrate.errors import InvalidInputError, OrchestrateError
from orchestrate.workflow import AnyWorkflow, Branch, Loop, Map, Node, Parallel, Step, SubWorkflow, Workflow

YAML_SUFFIXES = (".yaml", ".yml")


def is_yaml_target(target: str) -> bool:
    """Whether ``target`` names a YAML file rather than a Python workflow."""
    return target.lower().endswith(YAML_SUFFIXES)


def load_target(target: str) -> AnyWorkflow:
    """The workflow of a YAML file or of a Python target.

    Raises:
        InvalidInputError: the file is missing or invalid (for YAML: its first problem,
            and how many more ``orchestrate validate`` lists), or the Python target cannot
            be loaded.
    """
    if not is_yaml_target(target):
        return load_workflow(target)
    from orchestrate.yaml import YamlDefinitionError, load

    if not os.path.isfile(target):
        raise InvalidInputError(f"no such file: {target!r}")
    try:
        return load(target)
    except YamlDefinitionError as exc:
        more = len(exc.problems) - 1
        suffix = f" ({more} more: `orchestrate validate {target}` lists them all)" if more > 0 else ""
        raise InvalidInputError(f"{exc.problems[0]}{suffix}") from None


def declared_monitors(workflows: Sequence[AnyWorkflow], monitors: Sequence[Any] = ()) -> list[Any]:
    """``monitors`` and the ones the YAML files of ``workflows`` declare, each once.

    Raises:
        InvalidInputError: two different monitors share a name.
    """
    from orchestrate.yaml import monitors_of

    found = list(monitors)
    for wf in workflows:
        found += [m for m in monitors_of(wf) if m not in found]
    names = [m.name for m in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"monitor names must be unique; used twice: {', '.join(twice)}")
    return found


def canonical(target: str) -> str:
    """The target with an absolute path, so later commands find it from any directory."""
    return os.path.abspath(target) if is_yaml_target(target) else canonical_target(target)


def count_steps(wf: Workflow) -> int:
    """Steps in the definition, nested ones included (the error handler is not counted)."""
    return sum(1 for node in _walk(wf.nodes) if isinstance(node, Step))


def _walk(nodes: Sequence[Node]) -> Iterator[Node]:
    for node in nodes:
        yield node
        yield from _walk(_children(node))


def _children(node: Node) -> list[Node]:
    if isinstance(node, Branch):
        routes = [route for _, _, route in node.cases]
        if node.default_route is not None:
            routes.append(node.default_route)
        return [n for route in routes if not isinstance(route, str) for n in route]
    if isinstance(node, Parallel):
        return list(node.nodes)
    if isinstance(node, Map):
        return [node.node]
    if isinstance(node, Loop):
        return list(node.body)
    if isinstance(node, SubWorkflow):
        return list(node.workflow.nodes)
    return []


# validate ---------------------------------------------------------------------------------------


@click.command("validate", short_help="Check workflow definitions (YAML files or Python targets).")
@click.argument("targets", nargs=-1, required=True, metavar="FILE.yaml...")
def validate_command(targets: tuple[str, ...]) -> int:
    """Check each workflow definition and print one line per problem.

    A YAML file's problems are printed as FILE:LINE:COLUMN: PATH: MESSAGE, all of them;
    a valid definition prints `ok: workflow NAME version V, N steps`. Python targets
    (path/to/file.py:NAME) are loaded and checked the same way. Exit codes: 0 all valid,
    2 a problem.
    """
    from orchestrate.yaml import YamlDefinitionError, load

    failed = False
    for target in targets:
        try:
            wf = load(target) if is_yaml_target(target) else load_workflow(target)
        except YamlDefinitionError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(str(problem))
            continue
        except OrchestrateError as exc:
            failed = True
            click.echo(f"{target}: {' '.join(str(exc).split())}")
            continue
        if isinstance(wf, Workflow):
            steps = count_steps(wf)
            click.echo(f"ok: workflow {wf.name} version {wf.version}, {steps} step{'s' if steps != 1 else ''}")
        else:
            click.echo(f"ok: workflow {wf.name} version {wf.version} (a durable function)")
    return EXIT_USAGE if failed else EXIT_OK


# schema -----------------------------------------------------------------------------------------


@click.command("schema", short_help="Print the JSON Schema of YAML workflow files.")
def schema_command() -> int:
    """Print the JSON Schema of YAML workflow files, for editor completion.

    Save it (`orchestrate schema > workflow.schema.json`) and start a YAML file with
    `# yaml-language-server: $schema=workflow.schema.json`.
    """
    from orchestrate.yaml import json_schema

    click.echo(json.dumps(json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


# graph ------------------------------------------------------------------------------------------


@click.command("graph", short_help="Draw a workflow's graph: text, Mermaid, Graphviz DOT, SVG or PNG.")
@click.argument("target", metavar="TARGET")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["text", "mermaid", "dot", "svg", "png"]),
    default="text",
    show_default=True,
    help="text: an indented tree; mermaid: a flowchart for Markdown; dot: Graphviz source; svg: a picture "
    "drawn here; png: the same picture through a headless Chromium (needs --output).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    metavar="FILE",
    help="Write the drawing to FILE instead of printing it.",
)
def graph_command(target: str, format_: str, output: str | None) -> int:
    """Draw the workflow TARGET (FILE.yaml, path/to/file.py:NAME or package.module:NAME)."""
    if format_ == "png" and output is None:
        raise click.UsageError("--format png writes an image: give it a file with --output graph.png")
    wf = load_target(target)
    if not isinstance(wf, Workflow):
        raise InvalidInputError(
            f"{wf.name!r} is a durable function: its steps are decided by its code as it runs, so it has no graph"
        )
    if format_ == "text":
        drawing = "\n".join(render_text(wf)) + "\n"
    elif format_ in ("svg", "png"):
        drawing = flow_graph(wf).svg(title=f"workflow {wf.name} (version {wf.version})")
    else:
        graph = flow_graph(wf)
        drawing = (graph.mermaid() if format_ == "mermaid" else graph.dot()) + "\n"
    if output is None:
        click.echo(drawing, nl=False)
        return EXIT_OK
    try:
        if format_ == "png":
            from orchestrate.cli._svg import svg_to_png

            Path(output).write_bytes(svg_to_png(drawing))
        else:
            Path(output).write_text(drawing, encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot write {output!r}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)
    return EXIT_OK


def _policy(step: Step) -> str:
    """A short summary of a step's policy: ``timeout 5s, 3 attempts, fallback value``."""
    policy = step.policy
    parts: list[str] = []
    if step.fn is not None:
        parts.append(f"calls {getattr(step.fn, '__qualname__', type(step.fn).__name__)}")
    if policy.timeout.attempt is not None:
        parts.append(f"timeout {_seconds(policy.timeout.attempt)}")
    if policy.timeout.total is not None:
        parts.append(f"total {_seconds(policy.timeout.total)}")
    attempts = policy.retry.max_attempts
    if attempts != 1:
        parts.append("retries without limit" if attempts is None else f"{attempts} attempts")
    if policy.fallback:
        parts.append("fallback " + " > ".join(f.label for f in policy.fallback))
    if policy.cache is not None:
        parts.append(f"cache {_seconds(policy.cache.ttl)}")
    if step.gate is not None:
        parts.append(f"review {getattr(step.gate, 'at', 'after')}")
    return ", ".join(parts)


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s" if value >= 1 else f"{value * 1000:g}ms"


def _label(node: Node) -> str:
    if isinstance(node, Step):
        policy = _policy(node)
        return f"step {node.name}" + (f" ({policy})" if policy else "")
    if isinstance(node, Branch):
        return f"branch {node.name}" + (f" on {node.on}" if isinstance(node.on, str) else "")
    if isinstance(node, Parallel):
        return f"parallel {node.name}" + (f" (max {node.max_workers} at once)" if node.max_workers else "")
    if isinstance(node, Map):
        over = f" over {_predicate(node.over)}" if node.over is not None else ""
        workers = f", max {node.max_workers} at once" if node.max_workers else ""
        reduce = node.reduce if isinstance(node.reduce, str) else getattr(node.reduce, "__qualname__", "fn")
        return f"map {node.name}{over} (reduce {reduce}{workers})"
    if isinstance(node, Loop):
        return f"loop {node.name} until {_predicate(node.until)} (at most {node.max_iterations})"
    if isinstance(node, SubWorkflow):
        return f"subworkflow {node.name} (workflow {node.workflow.name})"
    return type(node).__name__.lower()


def _predicate(fn: Any) -> str:
    text = getattr(fn, "text", None)
    return text if isinstance(text, str) else getattr(fn, "__name__", "fn").replace("<lambda>", "fn")


def _case(node: Branch, label: str, key: Any) -> str:
    if node.by_key is None:
        return f"when {_predicate(key)}"
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    return str(key)


def render_text(wf: Workflow) -> list[str]:
    """The workflow as an indented tree, one node a line."""
    lines = [f"workflow {wf.name} (version {wf.version})"]
    lines += _tree(wf.nodes, "")
    if wf.error_handler is not None:
        lines.append(f"on failure: {_label(wf.error_handler)}")
    return lines


def _tree(nodes: Sequence[Node], indent: str) -> list[str]:
    lines: list[str] = []
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        lines.append(f"{indent}{'└── ' if last else '├── '}{_label(node)}")
        lines += _inside(node, indent + ("    " if last else "│   "))
    return lines


def _inside(node: Node, indent: str) -> list[str]:
    groups: list[tuple[str, str | Sequence[Node]]] = []
    if isinstance(node, Branch):
        groups = [(_case(node, label, key), route) for label, key, route in node.cases]
        if node.default_route is not None:
            groups.append(("otherwise", node.default_route))
    elif isinstance(node, Parallel):
        return _tree(node.nodes, indent)
    elif isinstance(node, Map):
        return _tree([node.node], indent)
    elif isinstance(node, Loop):
        return _tree(node.body, indent)
    elif isinstance(node, SubWorkflow):
        return _tree(node.workflow.nodes, indent)
    lines: list[str] = []
    for i, (label, route) in enumerate(groups):
        last = i == len(groups) - 1
        branch = "└── " if last else "├── "
        if isinstance(route, str):
            lines.append(f"{indent}{branch}{label} → go to {route}")
            continue
        lines.append(f"{indent}{branch}{label} →")
        lines += _tree(route, indent + ("    " if last else "│   "))
    return lines


@dataclass
class FlowGraph:
    """A workflow as boxes and arrows, for Mermaid, Graphviz and SVG."""

    nodes: list[tuple[str, str, str]] = field(default_factory=list)  # (id, label, shape); gate: a reviewed step
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # (from, to, label, dashed)

    def add(self, label: str, shape: str = "box") -> str:
        ident = f"n{len(self.nodes)}"
        self.nodes.append((ident, label, shape))
        return ident

    def link(self, sources: Sequence[tuple[str, str]], target: str) -> None:
        for source, label in sources:
            self.edges.append((source, target, label, False))

    def mermaid(self) -> str:
        """The graph as a Mermaid flowchart."""
        shapes = {
            "box": ('["', '"]'),
            "diamond": ('{"', '"}'),
            "round": ('(["', '"])'),
            "circle": ('(("', '"))'),
            "gate": ('{{"', '"}}'),
        }
        lines = ["flowchart TD"]
        for ident, label, shape in self.nodes:
            opening, closing = shapes[shape]
            lines.append(f"    {ident}{opening}{_mermaid_text(label)}{closing}")
        for source, target, label, dashed in self.edges:
            arrow = "-.->" if dashed else "-->"
            lines.append(f"    {source} {arrow}{f'|{_mermaid_text(label)}|' if label else ''} {target}")
        return "\n".join(lines)

    def dot(self) -> str:
        """The graph as Graphviz DOT source."""
        shapes = {
            "box": "box",
            "diamond": "diamond",
            "round": "box, style=rounded",
            "circle": "circle",
            "gate": "hexagon",
        }
        lines = ["digraph workflow {", "    rankdir=TB;", '    node [fontname="Helvetica"];']
        for ident, label, shape in self.nodes:
            lines.append(f"    {ident} [label={json.dumps(label)}, shape={shapes[shape]}];")
        for source, target, label, dashed in self.edges:
            attributes = [f"label={json.dumps(label)}"] if label else []
            if dashed:
                attributes.append("style=dashed")
            suffix = f" [{', '.join(attributes)}]" if attributes else ""
            lines.append(f"    {source} -> {target}{suffix};")
        lines.append("}")
        return "\n".join(lines)

    def svg(self, *, title: str) -> str:
        """The graph as an SVG document, laid out here (see :mod:`orchestrate.cli._svg`)."""
        from orchestrate.cli._svg import render_svg

        return render_svg(self.nodes, self.edges, title=title)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def flow_graph(wf: Workflow) -> FlowGraph:
    """Boxes and arrows of ``wf``: start, every node, jumps, loops' way back, end."""
    graph = FlowGraph()
    start = graph.add(f"start: {wf.name}", "circle")
    exits = _flow(graph, wf.nodes, [(start, "")])
    end = graph.add("end", "circle")
    graph.link(exits, end)
    if wf.error_handler is not None:
        handler = graph.add(f"on failure: {_label(wf.error_handler)}", "round")
        graph.edges.append((start, handler, "any step fails", True))
    return graph


def _flow(graph: FlowGraph, nodes: Sequence[Node], entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Draw ``nodes`` in sequence from ``entries``; return the open ends."""
    first: dict[str, str] = {}
    jumps: list[tuple[str, str, str]] = []  # (from, step name, label)
    for node in nodes:
        entries = _one(graph, node, entries, first, jumps)
    for source, target, label in jumps:
        if target in first:
            graph.edges.append((source, first[target], label, False))
    return entries


def _one(
    graph: FlowGraph,
    node: Node,
    entries: list[tuple[str, str]],
    first: dict[str, str],
    jumps: list[tuple[str, str, str]],
) -> list[tuple[str, str]]:
    if isinstance(node, Branch):
        ident = graph.add(_label(node), "diamond")
        first[node.name] = ident
        graph.link(entries, ident)
        exits: list[tuple[str, str]] = []
        routes = [(_case(node, label, key), route) for label, key, route in node.cases]
        if node.default_route is not None:
            routes.append(("otherwise", node.default_route))
        for label, route in routes:
            if isinstance(route, str):
                jumps.append((ident, route, label))
            else:
                exits += _flow(graph, route, [(ident, label)])
        return exits
    if isinstance(node, Parallel):
        fork = graph.add(_label(node), "round")
        first[node.name] = fork
        graph.link(entries, fork)
        ends: list[tuple[str, str]] = []
        for child in node.nodes:
            ends += _flow(graph, [child], [(fork, "")])
        join = graph.add(f"merge as {node.merge}", "round")
        graph.link(ends, join)
        return [(join, "")]
    if isinstance(node, Map):
        head = graph.add(_label(node), "round")
        first[node.name] = head
        graph.link(entries, head)
        ends = _flow(graph, [node.node], [(head, "each item")])
        reduce = graph.add(f"reduce {node.reduce if isinstance(node.reduce, str) else 'fn'}", "round")
        graph.link(ends, reduce)
        return [(reduce, "")]
    if isinstance(node, Loop):
        head = graph.add(_label(node), "round")
        first[node.name] = head
        graph.link(entries, head)
        ends = _flow(graph, node.body, [(head, "")])
        for source, _ in ends:
            graph.edges.append((source, head, "again", True))
        return [(source, f"until {_predicate(node.until)}") for source, _ in ends]
    if isinstance(node, SubWorkflow):
        head = graph.add(_label(node), "round")
        first[node.name] = head
        graph.link(entries, head)
        return _flow(graph, node.workflow.nodes, [(head, "")])
    ident = graph.add(_label(node), "gate" if isinstance(node, Step) and node.gate is not None else "box")
    first[node.name] = ident
    graph.link(entries, ident)
    return [(ident, "")]


COMMANDS = (validate_command, graph_command, schema_command)
"""The commands this module adds to the ``orchestrate`` group."""
