"""The ``monitors:`` of a YAML workflow, built as the observation layer's objects.

Each entry becomes what its Python twin writes (``Monitor(...)``, ``DriftMonitor(...)``,
``OutcomeMonitor(...)``), with ``workflow=`` the file's workflow, passing only the keys the
file gives so that the defaults are the Python API's own (and the twin compares equal).
A monitor must watch a step of the workflow. The monitors a loaded file declares are kept
beside its :class:`~orchestrate.workflow.Workflow` (:func:`monitors_of`), where
``orchestrate worker`` and ``orchestrate run`` find them.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrate.errors import OrchestrateError
from orchestrate.workflow import Branch, Loop, Map, Node, Parallel, Step, SubWorkflow, Workflow
from orchestrate.yaml._monitor_schema import RULES, DriftMonitorSpec, MetricMonitorSpec, OutcomeMonitorSpec
from orchestrate.yaml._scalars import Spec

if TYPE_CHECKING:
    from orchestrate.observe.alerts import AnyMonitor

_DECLARED: weakref.WeakKeyDictionary[Workflow, tuple[AnyMonitor, ...]] = weakref.WeakKeyDictionary()


def monitors_of(workflow: Any) -> list[AnyMonitor]:
    """The monitors the YAML file of ``workflow`` declares (empty for any other workflow).

    Args:
        workflow: a workflow from :func:`orchestrate.yaml.load` or :func:`~orchestrate.yaml.loads`.

    Returns:
        Its ``Monitor``, ``DriftMonitor`` and ``OutcomeMonitor`` objects, in file order.
    """
    try:
        return list(_DECLARED.get(workflow, ()))
    except TypeError:  # not weak-referenceable: not a built YAML workflow
        return []


def declare(workflow: Workflow, monitors: Sequence[AnyMonitor]) -> None:
    """Keep ``monitors`` as the ones ``workflow``'s file declares."""
    if monitors:
        _DECLARED[workflow] = tuple(monitors)


def step_names(nodes: Sequence[Node]) -> list[str]:
    """The names of every step in ``nodes``, nested ones included, in order."""
    names: list[str] = []
    for node in nodes:
        if isinstance(node, Step):
            names.append(node.name)
        elif isinstance(node, Branch):
            routes = [route for _, _, route in node.cases]
            if node.default_route is not None:
                routes.append(node.default_route)
            for route in routes:
                if not isinstance(route, str):
                    names += step_names(route)
        elif isinstance(node, Parallel):
            names += step_names(node.nodes)
        elif isinstance(node, Map):
            names += step_names([node.node])
        elif isinstance(node, Loop):
            names += step_names(node.body)
        elif isinstance(node, SubWorkflow):
            names += step_names(node.workflow.nodes)
    return names


def _rule(spec: Spec) -> Any:
    from orchestrate.observe.change import Cusum, PageHinkley
    from orchestrate.observe.monitors import Deviation, Threshold

    kinds: dict[str, Callable[..., Any]] = {
        "threshold": Threshold,
        "deviation": Deviation,
        "cusum": Cusum,
        "page_hinkley": PageHinkley,
    }
    for key in RULES:
        given = getattr(spec, key)
        if given is not None:
            return kinds[key](**_options(given))
    raise AssertionError("the schema requires one rule")  # pragma: no cover - checked by RuleMixin


def _options(spec: Spec) -> dict[str, Any]:
    return {key: getattr(spec, key) for key in spec.model_fields_set}


def build_monitor(
    spec: Any,
    *,
    workflow: str,
    steps: Sequence[str],
    problem: Callable[[tuple[Any, ...], str], Any],
    loc: tuple[Any, ...],
    resolve: Callable[[str, tuple[Any, ...]], Any],
) -> AnyMonitor | None:
    """The monitor ``spec`` describes, or ``None`` after reporting its problem with ``problem``."""
    from orchestrate.observe.alerts import OutcomeMonitor
    from orchestrate.observe.drift import Drift
    from orchestrate.observe.monitors import DriftMonitor, Monitor

    step = getattr(spec, "step", None)
    if step is not None and step not in steps:
        known = ", ".join(dict.fromkeys(steps)) or "none"
        close = difflib.get_close_matches(step, steps, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problem((*loc, "step"), f"no step named {step!r} in workflow {workflow!r}{hint} (its steps: {known})")
        return None
    options = {k: v for k, v in _options(spec).items() if k not in (*RULES, "drift", "encode", "outcome")}
    try:
        if isinstance(spec, MetricMonitorSpec):
            return Monitor(rule=_rule(spec), workflow=workflow, **options)
        if isinstance(spec, OutcomeMonitorSpec):
            return OutcomeMonitor(workflow, spec.outcome, _rule(spec), **options)
        assert isinstance(spec, DriftMonitorSpec)
        if spec.encode is not None:
            options["encode"] = resolve(spec.encode, (*loc, "encode"))
        return DriftMonitor(rule=Drift(**_options(spec.drift)), workflow=workflow, **options)
    except OrchestrateError as exc:
        problem(loc, str(exc))
        return None
