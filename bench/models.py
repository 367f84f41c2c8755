"""The model layer: what routing, caching, the breaker and the limiter add to a model call.

* ``ours.models.stack``: one ``generate`` through ``Router`` (complexity route) →
  ``CachedModel`` (exact cache, always a miss: every prompt differs) →
  ``CircuitBreakerModel`` → ``RateLimitedModel`` (a rate that never makes it wait) →
  a zero-latency ``FunctionModel``, with cost accounting; the floor is the same
  ``FunctionModel`` called directly. The overhead is what the layer costs per call; a
  real model call (milliseconds to seconds) dwarfs it.
* ``ours.models.classifier``: the embedded MiniLM intent classifier over the shipped
  held-out messages, in batches; reported as messages per second (skipped without the
  ``local`` extra).

Run alone: ``python -m bench --only models``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time

from bench.harness import Plan, Row, paired_async, skipped, summarise
from orchestrate.models.cache import CachedModel, ExactCache
from orchestrate.models.reliability import CircuitBreaker, CircuitBreakerModel, RateLimitedModel, RateLimiter
from orchestrate.models.router import ComplexityRoute, CostLedger, Router
from orchestrate.testing import FunctionModel


async def _stack(plan: Plan) -> Row:
    bare = FunctionModel(lambda request: "ok")
    wrapped = RateLimitedModel(
        CircuitBreakerModel(CachedModel(bare, exact=ExactCache()), CircuitBreaker()),
        RateLimiter(requests_per_second=1e9, burst=1_000_000),
    )
    router = Router(
        {"small": wrapped, "large": wrapped},
        complexity=ComplexityRoute(threshold=0.7, low="small", high="large"),
        default="small",
        ledger=CostLedger(),
    )
    counter = itertools.count()

    async def subject() -> None:
        await router.generate(f"where is order {next(counter)}?")

    async def floor() -> None:
        await bare.generate(f"where is order {next(counter)}?")

    calls = 500 if plan.quick else 5000
    subject_s, floor_s = await paired_async(
        subject, floor, runs=calls, floor_runs=calls, repeats=plan.repeats, warmup=min(calls, 200)
    )
    row = Row(
        key="ours.models.stack",
        group="models",
        system="orchestrate",
        label="generate through router + exact cache (miss) + breaker + limiter + cost ledger, per call",
        floor="the same zero-latency FunctionModel called directly",
        runs=calls,
    )
    return summarise(row, subject_s, floor_s, per=1)


def _classifier(plan: Plan) -> Row:
    key, label = "ours.models.classifier", "MiniLM intent classifier on the shipped held-out messages"
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from orchestrate.models.local import IntentClassifier, LocalEmbedder, support_intents
    except ImportError as exc:
        return skipped(key, "models", "orchestrate", label, f"needs the local extra: {exc}")
    embedder = LocalEmbedder()
    classifier = IntentClassifier.from_records(embedder, support_intents("train"))
    test = support_intents("test")
    texts, labels = [r["text"] for r in test], [r["intent"] for r in test]
    classifier.classify_many(texts[:16])  # warm up
    rates = []
    accuracy = 0.0
    for _ in range(1 if plan.quick else 3):
        started = time.perf_counter()
        report = classifier.evaluate(texts, labels)
        rates.append(len(texts) / (time.perf_counter() - started))
        accuracy = report.accuracy
    rates.sort()
    return Row(
        key=key,
        group="models",
        system="orchestrate",
        label=label,
        floor="",
        runs=len(texts),
        extra={"messages_per_second": round(rates[len(rates) // 2], 1), "accuracy": round(accuracy, 4)},
        note=f"{rates[len(rates) // 2]:.0f} messages/s, accuracy {accuracy:.1%} on {len(texts)} messages",
    )


def run(plan: Plan) -> list[Row]:
    """Measure the model layer's overhead per call and the classifier's throughput."""
    return [asyncio.run(_stack(plan)), _classifier(plan)]
