"""Change detection that does not page on every random dip: CUSUM and Page-Hinkley.

A rule such as ``Deviation(sigmas=2)`` judges each window alone, so noise alone crosses
2 sd about once in 22 windows: the pager learns to be ignored. A change detector
accumulates evidence over consecutive windows and fires when a *sustained* shift of the
mean has built up, so a single noisy window does not fire while a small lasting shift
does, a few windows after it starts.

Both detectors here are pure: a frozen rule with a :meth:`~Cusum.start` state and an
:meth:`~Cusum.update` that returns the next state and, while the change stands, why.
They learn the baseline's mean and standard deviation from the first ``warmup`` values
(then keep it pinned), measure everything in those standard deviations, and, once they
have fired, stay firing until ``resolve`` consecutive values are back within one
standard deviation of the baseline.

- :class:`Cusum`: the two-sided tabular CUSUM. ``k`` is the allowance (half the shift
  worth detecting, in sd), ``h`` the decision interval. With ``k=0.5, h=5`` a stable
  normal stream raises a false alarm about once in 465 values on each side (about once
  in 230 for ``direction="both"``, against once in 22 for a 2 sd rule), and a lasting
  1 sd shift is caught after about 10; a larger ``h`` trades speed for quiet.
- :class:`PageHinkley`: the Page-Hinkley test, which compares each value with the running
  mean of everything seen since the last alarm rather than with the pinned mean; it
  tolerates a slow drift of ``delta`` sd per value and fires at ``threshold`` sd of
  accumulated change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from orchestrate.errors import InvalidInputError

Direction = Literal["up", "down", "both"]


@dataclass(frozen=True)
class ChangeState:
    """A change detector's state after some values (immutable; ``update`` returns a new one).

    Attributes:
        n: values seen.
        mean: the baseline mean (learned over the warm-up, then pinned).
        m2: the warm-up's sum of squared deviations (Welford).
        up: accumulated evidence of an upward shift, in sd.
        down: accumulated evidence of a downward shift, in sd.
        running: Page-Hinkley's running mean since the last alarm, in sd from the baseline.
        count: values in ``running`` (the warm-up's included).
        low: Page-Hinkley's minimum (upward) and maximum (downward) cumulative sums.
        high: see ``low``.
        firing: the detector is in alarm.
        calm: consecutive values back within 1 sd while firing.
        reason: why it fired (kept while firing).
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    up: float = 0.0
    down: float = 0.0
    running: float = 0.0
    count: int = 0
    low: float = 0.0
    high: float = 0.0
    firing: bool = False
    calm: int = 0
    reason: str | None = None


def _validate(name: str, warmup: int, resolve: int, min_sd: float, direction: str) -> None:
    if warmup < 2:
        raise InvalidInputError(f"{name} needs warmup >= 2 values to learn a baseline")
    if resolve < 1:
        raise InvalidInputError(f"{name} needs resolve >= 1")
    if min_sd < 0 or not math.isfinite(min_sd):
        raise InvalidInputError(f"{name} needs a finite min_sd >= 0")
    if direction not in ("up", "down", "both"):
        raise InvalidInputError(f"{name}'s direction is 'up', 'down' or 'both', not {direction!r}")


def _warm(state: ChangeState, value: float) -> ChangeState:
    n = state.n + 1
    delta = value - state.mean
    mean = state.mean + delta / n
    return replace(state, n=n, mean=mean, m2=state.m2 + delta * (value - mean))


def _sd(state: ChangeState, warmup: int, min_sd: float) -> float:
    return max(math.sqrt(state.m2 / (warmup - 1)), min_sd)


def _z(value: float, mean: float, sd: float) -> float:
    if sd > 0:
        return (value - mean) / sd
    return 0.0 if value == mean else math.copysign(math.inf, value - mean)


def _calm_down(state: ChangeState, z: float, resolve: int) -> ChangeState:
    calm = state.calm + 1 if abs(z) < 1 else 0
    if calm >= resolve:
        return ChangeState(n=state.n, mean=state.mean, m2=state.m2)
    return replace(state, calm=calm)


@dataclass(frozen=True)
class Cusum:
    """Two-sided tabular CUSUM over a metric's values (see the module).

    Args:
        k: allowance per value, in baseline standard deviations.
        h: decision interval: fires when the accumulated evidence exceeds it (in sd).
        warmup: values that set the baseline's mean and standard deviation.
        direction: ``"up"``, ``"down"`` or ``"both"``.
        resolve: consecutive values within 1 sd of the baseline that end an alarm.
        min_sd: a floor on the baseline's standard deviation (for a steady metric).
    """

    k: float = 0.5
    h: float = 5.0
    warmup: int = 20
    direction: Direction = "both"
    resolve: int = 3
    min_sd: float = 0.0

    def __post_init__(self) -> None:
        if not (self.k >= 0 and self.h > 0 and math.isfinite(self.k) and math.isfinite(self.h)):
            raise InvalidInputError("Cusum needs k >= 0 and h > 0")
        _validate("Cusum", self.warmup, self.resolve, self.min_sd, self.direction)

    def start(self) -> ChangeState:
        """The state before any value."""
        return ChangeState()

    def update(self, state: ChangeState, value: float) -> tuple[ChangeState, str | None]:
        """Take one value: the next state, and why a change stands (``None``: no change)."""
        if state.n < self.warmup:
            return _warm(state, value), None
        sd = _sd(state, self.warmup, self.min_sd)
        z = _z(value, state.mean, sd)
        if state.firing:
            state = _calm_down(state, z, self.resolve)
            return state, state.reason
        up = max(0.0, state.up + z - self.k) if self.direction != "down" else 0.0
        down = max(0.0, state.down - z - self.k) if self.direction != "up" else 0.0
        if up > self.h or down > self.h:
            way, evidence = ("up", up) if up > self.h else ("down", down)
            reason = (
                f"CUSUM: the mean shifted {way} from {state.mean:.4g} (sd {sd:.3g}); "
                f"evidence {evidence:.3g} sd > {self.h:g} sd, latest {value:.4g}"
            )
            return replace(state, up=0.0, down=0.0, firing=True, calm=0, reason=reason), reason
        return replace(state, up=up, down=down), None


@dataclass(frozen=True)
class PageHinkley:
    """The Page-Hinkley test over a metric's values (see the module).

    Args:
        delta: tolerated change per value, in baseline standard deviations.
        threshold: fires when the accumulated change exceeds it (in sd).
        warmup: values that set the baseline's mean and standard deviation.
        direction: ``"up"``, ``"down"`` or ``"both"``.
        resolve: consecutive values within 1 sd of the baseline that end an alarm.
        min_sd: a floor on the baseline's standard deviation (for a steady metric).
    """

    delta: float = 0.5
    threshold: float = 5.0
    warmup: int = 20
    direction: Direction = "both"
    resolve: int = 3
    min_sd: float = 0.0

    def __post_init__(self) -> None:
        if not (self.delta >= 0 and self.threshold > 0 and math.isfinite(self.delta + self.threshold)):
            raise InvalidInputError("PageHinkley needs delta >= 0 and threshold > 0")
        _validate("PageHinkley", self.warmup, self.resolve, self.min_sd, self.direction)

    def start(self) -> ChangeState:
        """The state before any value."""
        return ChangeState()

    def update(self, state: ChangeState, value: float) -> tuple[ChangeState, str | None]:
        """Take one value: the next state, and why a change stands (``None``: no change)."""
        if state.n < self.warmup:
            return _warm(state, value), None
        sd = _sd(state, self.warmup, self.min_sd)
        z = _z(value, state.mean, sd)
        if state.firing:
            state = _calm_down(state, z, self.resolve)
            return state, state.reason
        if math.isinf(z):
            up = math.inf if z > 0 else 0.0
            down = math.inf if z < 0 else 0.0
            count, running, low, high = state.count, state.running, state.low, state.high
        else:
            # The warm-up's values (mean 0 in sd units) seed the running mean, so the
            # first value after them is judged against the baseline, not against itself.
            count = (state.count or self.warmup) + 1
            running = state.running + (z - state.running) / count
            # `up`/`down` are the cumulative sums m_t; `low`/`high` their running extremes.
            up = state.up + z - running - self.delta
            down = state.down + z - running + self.delta
            low, high = min(state.low, up), max(state.high, down)
        rise = up - low if self.direction != "down" else 0.0
        fall = high - down if self.direction != "up" else 0.0
        if rise > self.threshold or fall > self.threshold:
            way, evidence = ("up", rise) if rise > self.threshold else ("down", fall)
            reason = (
                f"Page-Hinkley: the mean shifted {way} from {state.mean:.4g} (sd {sd:.3g}); "
                f"change {evidence:.3g} sd > {self.threshold:g} sd, latest {value:.4g}"
            )
            return ChangeState(n=state.n, mean=state.mean, m2=state.m2, firing=True, reason=reason), reason
        return replace(state, up=up, down=down, running=running, count=count, low=low, high=high), None


ChangeRule = Cusum | PageHinkley
