"""Review gates: what people must decide before a run goes on, declared as frozen values.

* :class:`HumanReviewGate` — roles, required approvals, priority, SLA, what happens when
  the SLA passes (``"fail"`` by default; :class:`Escalate`, ``"approve"``, ``"reject"``,
  ``"continue"``, :class:`Default`, :class:`RouteTo`), where a rejection goes, a warning
  before the deadline, notifications, and on a step whether it sits ``before`` it (its
  input is approved first) or ``after`` it (its output is reviewed);
* :class:`TieredGate` of :class:`Tier` — confidence tiers (seed 003) in one declaration;
* :func:`review_queue` — the gate of a human queue that steps route to with
  ``Fallback("human_review_queue", doc)``;
* :func:`approval` — a role's approval check (seed 001's ``@approval(role=...)``);
* :class:`ReviewOutcome` — what a durable function's ``await ctx.review(...)`` returns.

Nothing here does I/O: the engine parks the run and keeps the item in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeAlias, TypeVar, cast

from orchestrate.errors import DefinitionError, ReviewPermissionError
from orchestrate.policies import Seconds, to_seconds

F = TypeVar("F", bound=Callable[..., Any])

PRIORITIES = ("urgent", "high", "normal", "low")
"""Review priorities, most urgent first."""

DEFAULT_WARN_FRACTION = 0.2
"""Without ``warn_before``, the warning comes when this fraction of the SLA is left."""


@dataclass(frozen=True)
class RouteTo:
    """Send the run to a later step (with the reviewed payload) instead of going on.

    Args:
        step: the step's name; a name that is no step of the workflow is a human queue.
    """

    step: str

    def __post_init__(self) -> None:
        if not isinstance(self.step, str) or not self.step:
            raise DefinitionError("RouteTo(step) needs a step name")


@dataclass(frozen=True)
class Default:
    """On timeout, go on with this value instead of the reviewed one (recorded as expired).

    Args:
        value: what the run continues with (JSON data).
    """

    value: Any


TimeoutAction: TypeAlias = "Literal['fail', 'approve', 'reject', 'continue'] | Escalate | RouteTo | Default"
"""What happens when an item's SLA passes: ``"fail"`` (the default: the run fails with
:class:`~orchestrate.errors.ReviewExpiredError`), ``"reject"`` (as a rejection),
``"approve"`` (as an approval), ``"continue"`` (go on with the unreviewed value, marked
expired and not approved), :class:`Default` (go on with a given value), :class:`RouteTo`
or :class:`Escalate`."""

_DEFAULTS = ("fail", "approve", "reject", "continue")

GateAt: TypeAlias = "Literal['before', 'after']"
"""Where a step's gate sits: ``"before"`` reviews its input (it runs only once approved),
``"after"`` reviews its output (nothing downstream sees it before a decision)."""


def _check_roles(roles: Any, what: str) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Sequence):
        raise DefinitionError(f"{what} is a list of role names, got {roles!r}")
    for role in roles:
        if not isinstance(role, str) or not role or "|" in role:
            raise DefinitionError(f"{what}: role names are non-empty strings without '|', got {role!r}")
    return tuple(dict.fromkeys(roles))


def _check_priority(priority: str, what: str) -> str:
    if priority not in PRIORITIES:
        raise DefinitionError(f"{what} priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    return priority


def _check_action(action: Any, what: str) -> TimeoutAction:
    if isinstance(action, Escalate | RouteTo | Default) or (isinstance(action, str) and action in _DEFAULTS):
        return cast(TimeoutAction, action)
    raise DefinitionError(
        f"{what} must be 'fail', 'approve', 'reject', 'continue', Default(value), Escalate(to=...) or "
        f"RouteTo(step), got {action!r}"
    )


def _check_at(at: Any, what: str) -> GateAt:
    if at not in ("before", "after"):
        raise DefinitionError(
            f"{what} at= must be 'before' (review the step's input; it runs once approved) or 'after' "
            f"(review its output), got {at!r}"
        )
    return at  # type: ignore[no-any-return]


def _warn_seconds(warn_before: Seconds | None, timeout: float | None, what: str) -> float | None:
    """Seconds before the deadline at which to warn; ``None``: no warning."""
    if timeout is None:
        return None
    if warn_before is None:
        return timeout * DEFAULT_WARN_FRACTION
    if warn_before == 0 or warn_before == timedelta(0):
        return None
    seconds = to_seconds(warn_before, what=f"{what} warn_before")
    assert seconds is not None
    if seconds >= timeout:
        raise DefinitionError(f"{what} warn_before ({seconds:g}s) must be shorter than its timeout ({timeout:g}s)")
    return seconds


def describe_action(action: TimeoutAction | None) -> str:
    """A short label of a timeout action, for items, events and the CLI."""
    if isinstance(action, Escalate):
        return f"escalate:{action.to}"
    if isinstance(action, RouteTo):
        return f"route:{action.step}"
    if isinstance(action, Default):
        return "default"
    return str(action or "fail")


@dataclass(frozen=True)
class Escalate:
    """On timeout, hand the item to another role: a new item with its own SLA.

    Args:
        to: the role that gets the new item.
        timeout: its SLA; ``None`` waits for that role without a deadline.
        priority: its priority.
        on_timeout: what happens when *its* SLA passes (another :class:`Escalate`
            builds a chain).
        warn_before: as for :class:`HumanReviewGate`.
    """

    to: str
    timeout: float | None = None
    priority: str = "urgent"
    on_timeout: TimeoutAction = "fail"
    warn_before: float | None = None

    def __init__(
        self,
        to: str,
        *,
        timeout: Seconds | None = None,
        priority: str = "urgent",
        on_timeout: TimeoutAction = "fail",
        warn_before: Seconds | None = None,
    ) -> None:
        (role,) = _check_roles([to], "Escalate(to=...)")
        seconds = to_seconds(timeout, what="Escalate timeout")
        if on_timeout != "fail" and seconds is None:
            raise DefinitionError("Escalate(on_timeout=...) needs a timeout")
        object.__setattr__(self, "to", role)
        object.__setattr__(self, "timeout", seconds)
        object.__setattr__(self, "priority", _check_priority(priority, "Escalate"))
        object.__setattr__(self, "on_timeout", _check_action(on_timeout, "Escalate on_timeout"))
        object.__setattr__(self, "warn_before", _warn_seconds(warn_before, seconds, "Escalate"))


@dataclass(frozen=True)
class Level:
    """The rules of one item of a gate: the gate's own (level 0) or its n-th escalation."""

    roles: tuple[str, ...]
    required_roles: tuple[str, ...]
    min_approvals: int
    priority: str
    timeout: float | None
    warn_before: float | None
    on_timeout: TimeoutAction


Notifier: TypeAlias = "str | Callable[..., Any]"
"""A webhook URL (POSTed JSON) or a hook called with ``event=`` and ``review=`` keywords."""


@dataclass(frozen=True)
class HumanReviewGate:
    """A review gate: the run parks until people decide on a payload.

    Args:
        roles: roles allowed to decide; empty (and no ``required_approvals``): anyone.
        required_approvals: roles that must each approve (``["medical_reviewer",
            "quality_assurance"]``), or a number of approvals from distinct reviewers.
        timeout: the SLA, seconds or a ``timedelta``; ``None`` waits without a deadline.
        escalate_on_timeout: on timeout, give the item to ``escalate_to`` (seed 001).
        escalate_to: the role of ``escalate_on_timeout``.
        on_timeout: what happens when the SLA passes: ``"fail"`` (the default: the run
            fails with ``ReviewExpiredError``, in every definition style), ``"reject"``,
            ``"approve"``, ``"continue"`` (go on unreviewed, marked expired),
            ``Default(value)``, ``RouteTo(step)`` or ``Escalate(to=..., timeout=...)``.
        at: on a step, ``"after"`` (default) reviews its output before anything downstream
            sees it; ``"before"`` reviews its input, and the step (and its side effect)
            runs only once approved, with the approved or edited input.
        on_reject: ``"fail"`` (``RejectedError``) or the name of a later step (or
            ``RouteTo``) that gets the payload instead.
        warn_before: warn (an event and a notification) this long before the deadline;
            default a fifth of the SLA; ``0`` for no warning.
        priority: ``"urgent"``, ``"high"``, ``"normal"`` or ``"low"``.
        notify: webhook URLs or hooks told about new items, escalations and warnings.
        queue: the name shown for the item (default ``"review"``).
        allow_self_approval: whether the person who started the run may approve (or
            edit) its item. ``False``: four eyes, refused by the HTTP API and by
            ``Client.approve`` whenever the run records who started it; ``True``:
            allowed; ``None`` (default): the server's ``self_approval`` setting decides.
    """

    roles: tuple[str, ...] = ()
    required_approvals: tuple[str, ...] = ()
    min_approvals: int = 1
    timeout: float | None = None
    escalate_on_timeout: bool = False
    escalate_to: str = "supervisor"
    on_timeout: TimeoutAction = "fail"
    on_reject: RouteTo | None = None
    warn_before: float | None = None
    priority: str = "normal"
    notify: tuple[Notifier, ...] = field(default=())
    queue: str = "review"
    at: GateAt = "after"
    allow_self_approval: bool | None = None

    def __init__(
        self,
        *,
        roles: Sequence[str] = (),
        required_approvals: Sequence[str] | int = (),
        timeout: Seconds | None = None,
        escalate_on_timeout: bool = False,
        escalate_to: str = "supervisor",
        on_timeout: TimeoutAction | None = None,
        on_reject: str | RouteTo = "fail",
        warn_before: Seconds | None = None,
        priority: str = "normal",
        notify: Notifier | Sequence[Notifier] = (),
        queue: str = "review",
        at: GateAt = "after",
        allow_self_approval: bool | None = None,
    ) -> None:
        where = "HumanReviewGate"
        if isinstance(required_approvals, bool):
            raise DefinitionError(f"{where} required_approvals is a list of roles or a count")
        if isinstance(required_approvals, int):
            if required_approvals < 1:
                raise DefinitionError(f"{where} required_approvals must be at least 1, got {required_approvals}")
            required: tuple[str, ...] = ()
            count = required_approvals
        else:
            required = _check_roles(required_approvals, f"{where} required_approvals")
            count = 1
        seconds = to_seconds(timeout, what=f"{where} timeout")
        (escalation_role,) = _check_roles([escalate_to], f"{where} escalate_to")
        if on_timeout is None:
            action: TimeoutAction = Escalate(escalation_role) if escalate_on_timeout else "fail"
        else:
            action = _check_action(on_timeout, f"{where} on_timeout")
            if escalate_on_timeout and not isinstance(action, Escalate):
                raise DefinitionError(f"{where}: escalate_on_timeout=True contradicts on_timeout={on_timeout!r}")
        if seconds is None and (escalate_on_timeout or (on_timeout is not None and on_timeout != "fail")):
            raise DefinitionError(f"{where}: a timeout action needs a timeout (the SLA)")
        if isinstance(on_reject, RouteTo):
            reject_route: RouteTo | None = on_reject
        elif on_reject == "fail":
            reject_route = None
        elif isinstance(on_reject, str) and on_reject:
            reject_route = RouteTo(on_reject)
        else:
            raise DefinitionError(f"{where} on_reject must be 'fail' or a step name, got {on_reject!r}")
        targets = (notify,) if isinstance(notify, str) or callable(notify) else tuple(notify)
        for target in targets:
            if not (callable(target) or (isinstance(target, str) and target.startswith(("http://", "https://")))):
                raise DefinitionError(f"{where} notify takes http(s) URLs or callables, got {target!r}")
        if not isinstance(queue, str) or not queue:
            raise DefinitionError(f"{where} queue must be a name")
        object.__setattr__(self, "roles", _check_roles(roles, f"{where} roles"))
        object.__setattr__(self, "required_approvals", required)
        object.__setattr__(self, "min_approvals", count)
        object.__setattr__(self, "timeout", seconds)
        object.__setattr__(self, "escalate_on_timeout", escalate_on_timeout)
        object.__setattr__(self, "escalate_to", escalation_role)
        object.__setattr__(self, "on_timeout", action)
        object.__setattr__(self, "on_reject", reject_route)
        object.__setattr__(self, "warn_before", _warn_seconds(warn_before, seconds, where))
        object.__setattr__(self, "priority", _check_priority(priority, where))
        object.__setattr__(self, "notify", targets)
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "at", _check_at(at, where))
        if allow_self_approval is not None and not isinstance(allow_self_approval, bool):
            raise DefinitionError(f"{where} allow_self_approval must be a bool or None, got {allow_self_approval!r}")
        object.__setattr__(self, "allow_self_approval", allow_self_approval)

    def level(self, n: int) -> Level:
        """The rules of the gate's item at escalation level ``n`` (0: the gate's own)."""
        if n == 0:
            return Level(
                self.roles,
                self.required_approvals,
                self.min_approvals,
                self.priority,
                self.timeout,
                self.warn_before,
                self.on_timeout,
            )
        action: TimeoutAction = self.on_timeout
        for _ in range(n - 1):
            if not isinstance(action, Escalate):
                break
            action = action.on_timeout
        if not isinstance(action, Escalate):
            raise DefinitionError(f"this gate has no escalation level {n}; was the workflow changed under its runs?")
        return Level((action.to,), (), 1, action.priority, action.timeout, action.warn_before, action.on_timeout)


@dataclass(frozen=True)
class Tier:
    """One confidence tier of a :class:`TieredGate`.

    Args:
        threshold: the lowest confidence this tier takes.
        gate: the review for this tier; ``None`` approves automatically.
        when: an extra condition on the reviewed value (e.g. ``lambda r: r["sensitive"]``).
        name: a label recorded on the item and in the history (default from the above).
    """

    threshold: float = 0.0
    gate: HumanReviewGate | None = None
    when: Callable[[Any], bool] | None = None
    name: str = ""

    def __init__(
        self,
        threshold: float = 0.0,
        gate: HumanReviewGate | None = None,
        *,
        when: Callable[[Any], bool] | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise DefinitionError(f"Tier threshold must be a number, got {threshold!r}")
        if gate is not None and not isinstance(gate, HumanReviewGate):
            raise DefinitionError(f"Tier gate must be a HumanReviewGate or None (automatic), got {gate!r}")
        if when is not None and not callable(when):
            raise DefinitionError(f"Tier when= must be a function of the reviewed value, got {when!r}")
        label = name or (
            ("auto" if gate is None else f"{gate.priority}")
            + f">={threshold:g}"
            + (f"+{getattr(when, '__name__', 'when')}" if when is not None else "")
        )
        object.__setattr__(self, "threshold", float(threshold))
        object.__setattr__(self, "gate", gate)
        object.__setattr__(self, "when", when)
        object.__setattr__(self, "name", label.replace("<lambda>", "when"))


@dataclass(frozen=True)
class TieredGate:
    """Confidence tiers as one gate: the first tier the value qualifies for decides.

    ::

        TieredGate("confidence", [
            Tier(0.8),                                                   # auto-send
            Tier(0.5, HumanReviewGate(priority="normal", timeout=timedelta(minutes=120))),
            Tier(0.0, HumanReviewGate(roles=["senior_agent"], priority="urgent",
                                      timeout=timedelta(minutes=30)), when=is_sensitive),
        ], otherwise=HumanReviewGate(priority="low", timeout=timedelta(minutes=360)))

    Args:
        on: the confidence: a field name or dotted path into the reviewed value, or a
            function of it. A missing or non-numeric confidence qualifies for no
            threshold: it goes to ``otherwise`` (fail closed).
        tiers: tried in the order given.
        otherwise: the review when no tier matches (``None``: approve automatically).
        at: on a step, ``"after"`` (default: tiers on its output) or ``"before"`` (tiers
            on its input; the step runs once approved).
    """

    on: str | Callable[[Any], Any]
    tiers: tuple[Tier, ...]
    otherwise: HumanReviewGate | None = None
    at: GateAt = "after"

    def __init__(
        self,
        on: str | Callable[[Any], Any],
        tiers: Sequence[Tier],
        *,
        otherwise: HumanReviewGate | None = None,
        at: GateAt = "after",
    ) -> None:
        if not (callable(on) or (isinstance(on, str) and on)):
            raise DefinitionError(f"TieredGate on= must be a field name or a function, got {on!r}")
        if not tiers or not all(isinstance(t, Tier) for t in tiers):
            raise DefinitionError("TieredGate needs a list of Tier(...)")
        if otherwise is not None and not isinstance(otherwise, HumanReviewGate):
            raise DefinitionError(f"TieredGate otherwise= must be a HumanReviewGate or None, got {otherwise!r}")
        object.__setattr__(self, "on", on)
        object.__setattr__(self, "tiers", tuple(tiers))
        object.__setattr__(self, "otherwise", otherwise)
        object.__setattr__(self, "at", _check_at(at, "TieredGate"))

    def score(self, value: Any) -> float | None:
        """The confidence of ``value``; ``None`` when it has none."""
        if callable(self.on):
            found = self.on(value)
        else:
            found = value
            for part in self.on.split("."):
                found = found.get(part) if isinstance(found, dict) else getattr(found, part, None)
        if isinstance(found, bool) or not isinstance(found, int | float):
            return None
        return float(found)

    def choose(self, value: Any) -> tuple[HumanReviewGate | None, str]:
        """The gate for ``value`` (``None``: automatic) and the tier's label."""
        score = self.score(value)
        if score is not None:
            for tier in self.tiers:
                if score >= tier.threshold and (tier.when is None or bool(tier.when(value))):
                    return tier.gate, tier.name
        return self.otherwise, "otherwise"


AnyGate: TypeAlias = "HumanReviewGate | TieredGate"
"""What a step's ``gate=`` and ``ctx.review(gate=...)`` accept."""


@dataclass(frozen=True)
class ReviewOutcome:
    """How a review ended, as the run sees it.

    Attributes:
        approved: whether the run goes on with ``payload``.
        payload: the reviewed value, or the reviewers' edited version of it.
        outcome: ``"approved"``, ``"edited"``, ``"rejected"``, ``"expired"`` (SLA
            default taken), ``"auto"`` (a tier without review) or ``"signal"`` (a raw
            ``Client.signal`` value).
        reason: the rejection's reason, or why the default was taken.
        by: who decided last (``"sla"`` for a timeout default).
        role: the role they decided in.
        review_id: the item decided (the escalated one, after an escalation).
        route: the step to go to instead (a rejection or a timeout routed there).
        timed_out: the SLA passed and the gate's default was taken.
        tier: the confidence tier's label, for tiered gates.
        value: the raw decision the run received.
    """

    approved: bool
    payload: Any
    outcome: str
    reason: str | None = None
    by: str | None = None
    role: str | None = None
    review_id: str | None = None
    route: str | None = None
    timed_out: bool = False
    tier: str | None = None
    value: Any = None


_QUEUES: dict[str, AnyGate] = {}


def review_queue(name: str, gate: AnyGate) -> AnyGate:
    """Configure the human queue ``name`` that steps route to with ``Fallback(name, doc)``.

    Without this a queue's items are open to anyone, with normal priority and no SLA.
    Configure it in the module that defines the workflow (the worker's process needs it).
    """
    if not isinstance(name, str) or not name:
        raise DefinitionError("review_queue(name, gate) needs a queue name")
    if not isinstance(gate, HumanReviewGate | TieredGate):
        raise DefinitionError(f"review_queue({name!r}, gate): gate must be a HumanReviewGate or TieredGate")
    _QUEUES[name] = gate
    return gate


def queue_gate(name: str) -> AnyGate:
    """The gate configured for the human queue ``name`` (an open one if none was)."""
    found = _QUEUES.get(name)
    return found if found is not None else HumanReviewGate(queue=name)


APPROVERS: dict[str, Callable[..., Any]] = {}
"""Approval checks by role, registered with :func:`approval`."""


def approval(*, role: str) -> Callable[[F], F]:
    """Register ``fn`` as the approval check of ``role`` (seed 001)::

        @approval(role="medical_reviewer")
        def reviewer_approve(diagnosis: dict) -> bool: ...

    When someone approves (or edits) an item in that role through the ``Client`` of
    this process, the check is called with the payload they approve; a false result
    refuses the approval with :class:`ReviewPermissionError`.
    """
    if not isinstance(role, str) or not role:
        raise DefinitionError("approval(role=...) needs a role name")
    (checked,) = _check_roles([role], "approval(role=...)")

    def register(fn: F) -> F:
        APPROVERS[checked] = fn
        fn.__orchestrate_role__ = checked  # type: ignore[attr-defined]
        return fn

    return register


SELF_APPROVAL = "allow_self_approval"
"""The review item's ``meta`` key holding its gate's ``allow_self_approval``."""


def self_approval_refusal(meta: Mapping[str, Any], *, started_by: Any, by: str, default: bool) -> str | None:
    """Why ``by`` may not approve an item of a run ``started_by`` started, or ``None`` when it may.

    ``meta`` is the item's: the gate's ``allow_self_approval`` when it set one, else
    ``default`` (the server's setting) decides. Without a recorded starter nothing is refused.
    """
    allowed = meta.get(SELF_APPROVAL)
    if not isinstance(allowed, bool):
        allowed = default
    if allowed or not isinstance(started_by, str) or started_by != by:
        return None
    return (
        f"{by} started the run and may not approve its review (the gate allows no self-approval): ask another reviewer"
    )


async def refuse_self_approval(store: Any, review_id: str, *, by: str) -> None:
    """Refuse ``by``'s approval of item ``review_id`` when its gate forbids self-approval and ``by`` started the run.

    The embedded path (``Client.approve``): only a gate set to ``allow_self_approval=False``
    refuses, and only when the run records who started it (runs started through the API).

    Raises:
        ReviewPermissionError: ``by`` started the run and the gate forbids it.
    """
    item = await store.get_review(review_id)
    if item is None or item.meta.get(SELF_APPROVAL) is not False:
        return
    run = await store.get_run(item.run_id)
    started_by = (run.options or {}).get("started_by") if run is not None else None
    refusal = self_approval_refusal(item.meta, started_by=started_by, by=by, default=True)
    if refusal is not None:
        raise ReviewPermissionError(f"review {review_id}: {refusal}")
