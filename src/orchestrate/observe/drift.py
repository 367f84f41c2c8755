"""Drift: how far a recent window of values has moved from a pinned reference window.

Seed 000's fraud model "trained on 2022 data kept approving loans through 2023": its
inputs had moved and nothing compared them with what it was built on. A
:class:`DriftDetector` keeps a **reference window** (the first ``reference`` values it
sees, or the values you pin) and a sliding **recent window**, and every ``every`` new
values scores the distance between the two with the rule's test:

=============  ===============================================  ===================
test           for                                              score
=============  ===============================================  ===================
``psi``        numbers (scores, amounts, confidences)           population stability index
``ks``         numbers                                          Kolmogorov-Smirnov statistic
``js``         categories (intents, labels, decisions)          Jensen-Shannon distance, base 2
``chi2``       categories                                       1 - p-value of a chi-squared test
``embedding``  texts, through an encoder such as MiniLM         cosine distance of mean embeddings
``mmd``        texts, through an encoder                        maximum mean discrepancy (RBF)
=============  ===============================================  ===================

The statistics are the standard ones, computed with NumPy and SciPy (extra ``drift``).
A score at or above the rule's ``threshold`` is drift; seed 000 records
``drift_score: 0.02`` with "< 0.05 acceptable". Usual thresholds: PSI 0.1 (moderate)
to 0.25 (major), KS 0.1-0.2 for windows of a few hundred values, JS 0.1, chi-squared 0.999 (a
p-value under 0.001), embedding 0.05-0.1, MMD 0.05.

The module is pure: a detector holds its windows in memory and reads no clock, so it can
be tested value by value; :class:`orchestrate.observe.monitors.DriftMonitor` feeds one
from a step's inputs or outputs.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from orchestrate.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Test = Literal["psi", "ks", "js", "chi2", "embedding", "mmd"]
TESTS: tuple[str, ...] = Test.__args__  # type: ignore[attr-defined]
NUMERIC: frozenset[str] = frozenset({"psi", "ks"})
CATEGORICAL: frozenset[str] = frozenset({"js", "chi2"})
TEXT: frozenset[str] = frozenset({"embedding", "mmd"})

_EPSILON = 1e-4  # floor for an empty bin's share: keeps PSI's logarithm finite


def _np() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy comes with the drift extra
        raise InvalidInputError("drift scores need NumPy and SciPy: pip install 'orchestrate-ai[drift]'") from exc
    return numpy


def _stats() -> Any:
    try:
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - scipy comes with the drift extra
        raise InvalidInputError("drift scores need NumPy and SciPy: pip install 'orchestrate-ai[drift]'") from exc
    return stats


def _numbers(values: Sequence[float], what: str) -> npt.NDArray[np.float64]:
    np_ = _np()
    array = np_.asarray(values, dtype=np_.float64)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInputError(f"{what} needs a non-empty sequence of numbers")
    if not np_.isfinite(array).all():
        raise InvalidInputError(f"{what} holds a NaN or an infinity; drop or replace them before scoring")
    return array  # type: ignore[no-any-return]


def psi(reference: Sequence[float], recent: Sequence[float], *, bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference``.

    The bins are the reference's quantiles (``bins`` of equal reference mass), widened to
    the whole real line at both ends; an empty bin counts as a share of 10⁻⁴.

    Returns:
        ``sum (recent% - reference%) * ln(recent% / reference%)``: 0 for the same
        distribution; under 0.1 stable, 0.1-0.25 moderate, above 0.25 a major shift.
    """
    if bins < 2:
        raise InvalidInputError("psi needs bins >= 2")
    np_ = _np()
    ref = _numbers(reference, "psi's reference")
    new = _numbers(recent, "psi's recent window")
    edges = np_.unique(np_.quantile(ref, np_.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np_.bincount(np_.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
    new_share = np_.bincount(np_.searchsorted(edges, new, side="right"), minlength=edges.size + 1) / new.size
    ref_share = np_.clip(ref_share, _EPSILON, None)
    new_share = np_.clip(new_share, _EPSILON, None)
    return float(np_.sum((new_share - ref_share) * np_.log(new_share / ref_share)))


def ks(reference: Sequence[float], recent: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``).

    Returns:
        ``(statistic, p_value)``: the largest gap between the two empirical distribution
        functions (0 to 1), and the probability of a gap that large from one distribution.
    """
    result = _stats().ks_2samp(_numbers(reference, "ks's reference"), _numbers(recent, "ks's recent window"))
    return float(result.statistic), float(result.pvalue)


def _frequencies(reference: Sequence[Hashable], recent: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    if not reference or not recent:
        raise InvalidInputError("a categorical drift score needs non-empty reference and recent windows")
    ref, new = Counter(reference), Counter(recent)
    categories = sorted(set(ref) | set(new), key=repr)
    return [ref[c] for c in categories], [new[c] for c in categories]


def js_distance(reference: Sequence[Hashable], recent: Sequence[Hashable]) -> float:
    """Jensen-Shannon distance (base 2) between the two windows' category frequencies.

    Returns:
        0 for the same frequencies, 1 for windows with no category in common.
    """
    from scipy.spatial import distance

    ref, new = _frequencies(reference, recent)
    return float(distance.jensenshannon(ref, new, base=2))


def chi_square(reference: Sequence[Hashable], recent: Sequence[Hashable]) -> tuple[float, float]:
    """chi-squared test of homogeneity of the two windows' category counts.

    Returns:
        ``(statistic, p_value)``; one category in both windows gives ``(0.0, 1.0)``.
    """
    ref, new = _frequencies(reference, recent)
    if len(ref) < 2:
        return 0.0, 1.0
    result = _stats().chi2_contingency([ref, new])
    return float(result.statistic), float(result.pvalue)


def _vectors(values: Any, what: str) -> npt.NDArray[np.float64]:
    np_ = _np()
    array = np_.asarray(values, dtype=np_.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InvalidInputError(f"{what} needs a non-empty sequence of vectors of one dimension")
    return array  # type: ignore[no-any-return]


def embedding_distance(reference: Any, recent: Any) -> float:
    """Cosine distance between the two windows' mean vectors (0 = same direction)."""
    np_ = _np()
    a = _vectors(reference, "embedding_distance's reference").mean(axis=0)
    b = _vectors(recent, "embedding_distance's recent window").mean(axis=0)
    norms = float(np_.linalg.norm(a) * np_.linalg.norm(b))
    if norms == 0.0:
        return 0.0 if not (a.any() or b.any()) else 1.0
    return float(max(0.0, 1.0 - float(a @ b) / norms))


def mmd(reference: Any, recent: Any) -> float:
    """Squared maximum mean discrepancy with an RBF kernel (biased estimate).

    The kernel's bandwidth is the median distance between all the vectors (the usual
    heuristic), so the score does not depend on the embeddings' scale.
    """
    np_ = _np()
    from scipy.spatial.distance import cdist

    x = _vectors(reference, "mmd's reference")
    y = _vectors(recent, "mmd's recent window")
    both = np_.vstack([x, y])
    distances = cdist(both, both, "sqeuclidean")
    positive = distances[distances > 0]
    bandwidth = float(np_.median(positive)) if positive.size else 1.0
    kernel = np_.exp(-distances / bandwidth)
    n = x.shape[0]
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(max(0.0, kxx.mean() + kyy.mean() - 2 * kxy.mean()))


@dataclass(frozen=True)
class Drift:
    """A drift rule: the test, its threshold, and the windows it compares.

    Args:
        test: ``psi``, ``ks``, ``js``, ``chi2``, ``embedding`` or ``mmd`` (see the module).
        threshold: the score from which it is drift.
        reference: values in the reference window (the first ones seen, unless pinned).
        window: values in the recent window.
        every: score again after this many new values (once both windows are full).
        bins: PSI's bins.
    """

    test: Test
    threshold: float
    reference: int = 500
    window: int = 200
    every: int = 50
    bins: int = 10

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise InvalidInputError(f"unknown drift test {self.test!r}; use one of {', '.join(TESTS)}")
        if not math.isfinite(self.threshold) or self.threshold <= 0:
            raise InvalidInputError(f"Drift({self.test!r}) needs a threshold > 0, got {self.threshold!r}")
        if self.reference < 2 or self.window < 2:
            raise InvalidInputError("Drift needs reference >= 2 and window >= 2 values")
        if not 1 <= self.every <= self.window:
            raise InvalidInputError(f"Drift needs 1 <= every <= window ({self.window}), got every={self.every}")
        if self.bins < 2:
            raise InvalidInputError("Drift needs bins >= 2")

    def score(self, reference: Sequence[Any], recent: Sequence[Any]) -> float:
        """The distance between two windows (vectors for ``embedding`` and ``mmd``)."""
        if self.test == "psi":
            return psi(reference, recent, bins=self.bins)
        if self.test == "ks":
            return ks(reference, recent)[0]
        if self.test == "js":
            return js_distance(reference, recent)
        if self.test == "chi2":
            return 1.0 - chi_square(reference, recent)[1]
        if self.test == "embedding":
            return embedding_distance(reference, recent)
        return mmd(reference, recent)

    def decide(self, score: float) -> str | None:
        """Why ``score`` is drift, or ``None``."""
        if score >= self.threshold:
            return f"{self.test} drift score {score:.4g} is at or above {self.threshold:g}"
        return None


@dataclass(frozen=True)
class DriftReading:
    """One scoring of the recent window against the reference.

    Attributes:
        score: the rule's distance.
        drifted: the score reached the threshold.
        reason: why it is drift (``None`` when it is not).
        seen: values seen so far, the reference's included.
        reference_version: how many times the reference was pinned or re-baselined.
    """

    score: float
    drifted: bool
    reason: str | None
    seen: int
    reference_version: int


Encode = Callable[[Sequence[str]], Any]


class DriftDetector:
    """A :class:`Drift` rule's windows: a pinned reference and a sliding recent window.

    Feed it one value at a time with :meth:`add`. The first ``rule.reference`` values
    become the reference (or pin one with :meth:`pin`); after that, every ``rule.every``
    values once the recent window holds ``rule.window`` of them, :meth:`add` returns a
    :class:`DriftReading`. :meth:`rebaseline` makes the recent window the new reference
    (after you have checked that the new normal is acceptable).

    Args:
        rule: the test, threshold and window sizes.
        encode: for ``embedding`` and ``mmd``: turns texts into vectors (e.g.
            ``orchestrate.models.local.LocalEmbedder().encode``, MiniLM). Texts are encoded
            when a window is scored, never one by one.
    """

    def __init__(self, rule: Drift, *, encode: Encode | None = None) -> None:
        if rule.test in TEXT and encode is None:
            raise InvalidInputError(
                f"Drift({rule.test!r}) compares texts through an encoder: pass encode=, "
                "e.g. orchestrate.models.local.LocalEmbedder().encode"
            )
        self.rule = rule
        self.encode = encode
        self.reference: list[Any] = []
        self.recent: deque[Any] = deque(maxlen=rule.window)
        self.reference_version = 0
        self.seen = 0
        self.last: DriftReading | None = None
        self._since_score = 0
        self._reference_vectors: Any = None
        self._pinned = False

    @property
    def pinned(self) -> bool:
        """Whether the reference window is complete (filled or pinned)."""
        return self._pinned

    def pin(self, values: Sequence[Any]) -> None:
        """Use ``values`` as the reference window (a new reference version)."""
        self._check_all(values)
        if len(values) < 2:
            raise InvalidInputError("a reference window needs at least 2 values")
        self.reference = list(values)
        self._pinned = True
        self.reference_version += 1
        self._reference_vectors = None
        self._since_score = 0

    def rebaseline(self) -> None:
        """Make the recent window the reference (a new reference version) and start over."""
        if len(self.recent) < 2:
            raise InvalidInputError("rebaseline needs a recent window of at least 2 values")
        self.pin(list(self.recent))
        self.recent.clear()
        self.last = None

    def add(self, value: Any) -> DriftReading | None:
        """Take one value; return a reading when it is time to score."""
        self._check(value)
        self.seen += 1
        if not self.pinned:
            self.reference.append(value)
            if len(self.reference) >= self.rule.reference:
                self._pinned = True
                self.reference_version += 1
            return None
        self.recent.append(value)
        self._since_score += 1
        if len(self.recent) < self.rule.window or self._since_score < self.rule.every:
            return None
        self._since_score = 0
        return self.score()

    def score(self) -> DriftReading:
        """Score the recent window against the reference now."""
        if not self.pinned or len(self.recent) < 2:
            raise InvalidInputError("a drift score needs a pinned reference and at least 2 recent values")
        if self.rule.test in TEXT:
            assert self.encode is not None  # checked in __init__
            if self._reference_vectors is None:
                self._reference_vectors = self.encode(self.reference)
            value = self.rule.score(self._reference_vectors, self.encode(list(self.recent)))
        else:
            value = self.rule.score(self.reference, list(self.recent))
        reason = self.rule.decide(value)
        self.last = DriftReading(value, reason is not None, reason, self.seen, self.reference_version)
        return self.last

    def _check(self, value: Any) -> None:
        test = self.rule.test
        if test in NUMERIC:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidInputError(f"Drift({test!r}) takes finite numbers, got {value!r}")
        elif test in TEXT:
            if not isinstance(value, str):
                raise InvalidInputError(f"Drift({test!r}) takes texts, got {type(value).__name__}")
        elif not isinstance(value, Hashable):
            raise InvalidInputError(f"Drift({test!r}) takes categories (hashable values), got {type(value).__name__}")

    def _check_all(self, values: Sequence[Any]) -> None:
        for value in values:
            self._check(value)
