"""Detection: how soon monitors notice a shift, and how often they cry wolf without one.

    python -m bench.detection [--shifts 20] [--quiet-runs 10000]

Seed 000's loan pipeline, its fraud step's output as a stream of runs: applicants'
incomes (a numeric input the model was trained on) and the model's confidence. For each of
``--shifts`` seeds the stream is stable for 1,000 runs and then shifts (2022 → 2023:
incomes move up by 0.75 standard deviations; the confidence sags from 0.93 to 0.88); a
separate ``--quiet-runs`` stream per seed never shifts. Each monitor reads the stream
through :class:`orchestrate.observe.monitors.MonitorObserver`'s ``step_succeeded`` hook,
exactly as an engine feeds it, so what is measured is the monitors' own behaviour:

* **delay**: runs from the shift to the first alert (median and worst over the seeds; a
  seed that never fires within 1,000 runs counts as missed);
* **false alerts**: alerts on the streams that never shift, per 10,000 runs.

Monitors compared: PSI and KS drift on the income (pinned reference of 500 runs, recent
window of 200, scored every 25), and on the confidence's window mean (20 runs a window,
a baseline of 40 windows) a 2-sd ``Deviation`` against ``Cusum`` and ``PageHinkley``
watching for a drop.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable

from orchestrate.observe import configure_logging
from orchestrate.observe.change import Cusum, PageHinkley
from orchestrate.observe.drift import Drift
from orchestrate.observe.monitors import Alert, Deviation, DriftMonitor, Monitor, MonitorObserver

STABLE = 1000
AFTER = 1000


def stream(seed: int, runs: int, shift_at: int | None) -> list[dict[str, float]]:
    """Fraud-step outputs: income and confidence, shifting at ``shift_at`` (never if None)."""
    rng = random.Random(seed)
    out = []
    for i in range(runs):
        shifted = shift_at is not None and i >= shift_at
        out.append(
            {
                "income": rng.gauss(69_000 if shifted else 60_000, 12_000),
                "confidence": min(1.0, rng.gauss(0.88 if shifted else 0.93, 0.04)),
            }
        )
    return out


def alerts_of(monitor: Monitor | DriftMonitor, outputs: list[dict[str, float]]) -> list[int]:
    """Runs at which ``monitor`` fired (transitions to firing)."""
    fired: list[int] = []
    run = {"i": 0}

    def tell(alert: Alert) -> None:
        if alert.state == "firing":
            fired.append(run["i"])

    observer = MonitorObserver([monitor], on_alert=tell)
    for i, output in enumerate(outputs):
        run["i"] = i
        observer.step_succeeded(
            workflow="loans", run_id=str(i), step="fraud_check", name="fraud_check", attempts=1,
            latency_s=0.01, input_hash="", cached=False, model=None, at=float(i), output=output,
        )  # fmt: skip
    return fired


MONITORS: dict[str, Callable[[], Monitor | DriftMonitor]] = {
    "income drift, PSI >= 0.25": lambda: DriftMonitor(
        "fraud_check", Drift("psi", 0.25, reference=500, window=200, every=25), field="income"
    ),
    "income drift, KS >= 0.2": lambda: DriftMonitor(
        "fraud_check", Drift("ks", 0.2, reference=500, window=200, every=25), field="income"
    ),
    "confidence, Deviation(2 sd)": lambda: Monitor(
        "fraud_check", "field_mean", Deviation(sigmas=2, baseline=50, min_windows=10), window=20, field="confidence"
    ),
    "confidence, Cusum(h=12, down)": lambda: Monitor(
        "fraud_check", "field_mean", Cusum(h=12, warmup=40, direction="down"), window=20, field="confidence"
    ),
    "confidence, PageHinkley(12, down)": lambda: Monitor(
        "fraud_check",
        "field_mean",
        PageHinkley(threshold=12, warmup=40, direction="down"),
        window=20,
        field="confidence",
    ),
}


def measure(name: str, shifts: int, quiet_runs: int) -> dict[str, float]:
    build = MONITORS[name]
    delays: list[float] = []
    missed = 0
    early = 0
    for seed in range(shifts):
        fired = alerts_of(build(), stream(seed, STABLE + AFTER, STABLE))
        before = [i for i in fired if i < STABLE]
        after = [i for i in fired if i >= STABLE]
        early += len(before)
        if after:
            delays.append(after[0] - STABLE)
        else:
            missed += 1
    false = sum(len(alerts_of(build(), stream(10_000 + seed, quiet_runs, None))) for seed in range(shifts))
    return {
        "median_delay": statistics.median(delays) if delays else float("nan"),
        "worst_delay": max(delays) if delays else float("nan"),
        "missed": missed,
        "false_per_10k": false / (shifts * quiet_runs) * 10_000,
        "alerts_before_shift": early,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifts", type=int, default=20)
    parser.add_argument("--quiet-runs", type=int, default=10_000)
    args = parser.parse_args(argv)
    configure_logging("error")  # the alerts are counted here, not printed
    print(f"{args.shifts} seeded shifts after {STABLE} stable runs; {args.quiet_runs} quiet runs per seed")
    print(f"{'monitor':34} {'median delay':>12} {'worst':>6} {'missed':>6} {'false/10k':>9} {'pre-shift':>9}")
    for name in MONITORS:
        r = measure(name, args.shifts, args.quiet_runs)
        print(
            f"{name:34} {r['median_delay']:12.0f} {r['worst_delay']:6.0f} {r['missed']:6.0f} "
            f"{r['false_per_10k']:9.2f} {r['alerts_before_shift']:9.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
