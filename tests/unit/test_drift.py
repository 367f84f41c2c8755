"""Drift scores and detectors: known distributions give the scores the statistics promise."""

from __future__ import annotations

import random

import numpy as np
import pytest

from orchestrate.errors import InvalidInputError
from orchestrate.observe.drift import (
    Drift,
    DriftDetector,
    chi_square,
    embedding_distance,
    js_distance,
    ks,
    mmd,
    psi,
)


def normal(seed: int, n: int, mean: float = 0.0, sd: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def test_psi_is_zero_for_the_same_sample_and_grows_with_the_shift() -> None:
    reference = normal(1, 2000)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    same = psi(reference, normal(2, 2000))
    small = psi(reference, normal(3, 2000, mean=0.25))
    large = psi(reference, normal(4, 2000, mean=1.0))
    assert same < 0.02  # sampling noise only
    assert 0.02 < small < 0.25
    assert large > 0.25  # a "major shift" by the usual reading
    assert same < small < large


def test_psi_of_a_value_outside_every_reference_bin_stays_finite() -> None:
    assert np.isfinite(psi([1.0, 2.0, 3.0, 4.0], [100.0, 200.0]))


def test_ks_statistic_and_p_value_match_the_textbook_cases() -> None:
    reference = normal(5, 1000)
    statistic, p_value = ks(reference, normal(6, 1000))
    assert statistic < 0.08 and p_value > 0.01
    statistic, p_value = ks(reference, normal(7, 1000, mean=0.5))
    assert statistic > 0.15 and p_value < 1e-6
    assert ks([0.0, 0.1, 0.2], [5.0, 5.1, 5.2])[0] == pytest.approx(1.0)


def test_categorical_scores() -> None:
    intents = ["order_status"] * 60 + ["refund"] * 30 + ["other"] * 10
    assert js_distance(intents, intents) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(["a"] * 10, ["b"] * 10) == pytest.approx(1.0)
    shifted = ["order_status"] * 20 + ["refund"] * 70 + ["other"] * 10
    assert js_distance(intents, shifted) > 0.2
    assert chi_square(intents, intents)[1] == pytest.approx(1.0)
    assert chi_square(intents * 5, shifted * 5)[1] < 1e-6
    assert chi_square(["a"] * 5, ["a"] * 7) == (0.0, 1.0)


def test_embedding_scores() -> None:
    rng = np.random.default_rng(8)
    reference = rng.normal(size=(200, 16)) + np.eye(16)[0] * 3
    same = rng.normal(size=(200, 16)) + np.eye(16)[0] * 3
    moved = rng.normal(size=(200, 16)) + np.eye(16)[1] * 3
    assert embedding_distance(reference, same) < 0.05
    assert embedding_distance(reference, moved) > 0.5
    assert mmd(reference, same) < mmd(reference, moved)
    assert mmd(reference, reference) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: psi([], [1.0]), "non-empty sequence of numbers"),
        (lambda: psi([1.0, float("nan")], [1.0]), "NaN or an infinity"),
        (lambda: psi([1.0, 2.0], [1.0], bins=1), "bins >= 2"),
        (lambda: js_distance([], ["a"]), "non-empty"),
        (lambda: embedding_distance([1.0, 2.0], [[1.0, 2.0]]), "vectors"),
        (lambda: Drift("wasserstein", 0.1), "unknown drift test 'wasserstein'"),  # type: ignore[arg-type]
        (lambda: Drift("psi", 0), "threshold > 0"),
        (lambda: Drift("psi", 0.1, window=10, every=20), "every <= window"),
        (lambda: DriftDetector(Drift("embedding", 0.1)), "pass encode="),
    ],
)
def test_bad_input_is_refused_with_what_to_do(call, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()


def test_detector_pins_the_first_values_then_scores_every_n() -> None:
    detector = DriftDetector(Drift("ks", 0.2, reference=100, window=50, every=10))
    values = normal(9, 100)
    assert [detector.add(v) for v in values] == [None] * 100
    assert detector.pinned and detector.reference_version == 1
    readings = [detector.add(v) for v in normal(10, 70)]
    scored = [r for r in readings if r is not None]
    # full at the 50th recent value, then every 10: values 50, 60 and 70
    assert [r.seen for r in scored] == [150, 160, 170]
    assert not any(r.drifted for r in scored)
    shifted = [detector.add(v) for v in normal(11, 50, mean=2.0)]
    last = [r for r in shifted if r is not None][-1]
    assert last.drifted and "ks drift score" in (last.reason or "")


def test_rebaseline_makes_the_new_normal_the_reference() -> None:
    detector = DriftDetector(Drift("psi", 0.25, reference=200, window=200, every=200))
    for v in normal(12, 200):
        detector.add(v)
    readings = [detector.add(v) for v in normal(13, 200, mean=2.0)]
    assert readings[-1] is not None and readings[-1].drifted
    detector.rebaseline()
    assert detector.reference_version == 2
    readings = [detector.add(v) for v in normal(14, 200, mean=2.0)]
    assert readings[-1] is not None and not readings[-1].drifted


def test_detector_refuses_values_of_the_wrong_kind() -> None:
    with pytest.raises(InvalidInputError, match="takes finite numbers"):
        DriftDetector(Drift("psi", 0.1)).add("high")
    with pytest.raises(InvalidInputError, match="takes texts"):
        DriftDetector(Drift("embedding", 0.1), encode=lambda texts: [[1.0]] * len(texts)).add(3)


def test_text_drift_through_an_encoder_encodes_windows_not_values() -> None:
    calls: list[int] = []

    def encode(texts):
        calls.append(len(texts))
        return [[1.0, 0.0] if "order" in t else [0.0, 1.0] for t in texts]

    detector = DriftDetector(Drift("embedding", 0.1, reference=20, window=10, every=10), encode=encode)
    for _ in range(20):
        detector.add("where is my order")
    readings = [detector.add("cancel my subscription") for _ in range(10)]
    assert readings[-1] is not None and readings[-1].drifted
    assert calls == [20, 10]  # the reference once, the recent window once
