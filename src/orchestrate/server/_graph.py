"""A workflow as nodes and edges for the dashboard, with the path a run took."""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrate.cli.yaml_commands import flow_graph
from orchestrate.server._models import Graph, GraphEdge, GraphNode
from orchestrate.store.base import StepRecord
from orchestrate.types import StepStatus
from orchestrate.workflow import AnyWorkflow, Workflow

_STEP = re.compile(r"^(step|map|loop|branch|parallel|subworkflow) (\S+)")
_KINDS = {"circle": "terminal", "diamond": "branch", "round": "handler", "box": "step"}


def workflow_graph(wf: AnyWorkflow | None, steps: Sequence[StepRecord] = (), *, ended: bool = False) -> Graph | None:
    """``wf``'s graph; with ``steps``, the ids of the nodes the run went through in ``path``.

    A durable function has no graph before it runs: its recorded steps, in order, are
    drawn as a chain instead.
    """
    taken = {s.name for s in steps if s.status is not StepStatus.FAILED} | {s.step_key for s in steps}
    if isinstance(wf, Workflow):
        flow = flow_graph(wf)
        nodes, path = [], []
        for index, (ident, label, shape) in enumerate(flow.nodes):
            found = _STEP.match(label)
            kind = found.group(1) if found else _KINDS.get(shape, "step")
            nodes.append(GraphNode(id=ident, label=label, kind=kind))
            if steps and (index == 0 or (found and found.group(2) in taken)):
                path.append(ident)
        if steps and ended and flow.nodes:
            end = next((ident for ident, label, _ in flow.nodes if label == "end"), None)
            if end is not None:
                path.append(end)
        edges = [GraphEdge(source=s, target=t, label=label) for s, t, label, _ in flow.edges]
        return Graph(nodes=nodes, edges=edges, path=path)
    if not steps:
        return None
    names = list(dict.fromkeys(s.name for s in steps))
    nodes = [GraphNode(id=f"s{i}", label=f"step {name}", kind="step") for i, name in enumerate(names)]
    edges = [GraphEdge(source=f"s{i}", target=f"s{i + 1}") for i in range(len(names) - 1)]
    return Graph(nodes=nodes, edges=edges, path=[n.id for n in nodes])
