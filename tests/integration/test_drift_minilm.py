"""Text drift through the embedded MiniLM: customers' messages change topic, the score says so."""

from __future__ import annotations

import random

from orchestrate.models.local import LocalEmbedder
from orchestrate.observe.drift import Drift, DriftDetector

ORDERS = [
    "where is my order {n}",
    "my parcel {n} has not arrived yet",
    "can you track package {n} for me",
    "order {n} still says in transit",
    "when will delivery {n} reach me",
]
REFUNDS = [
    "I want my money back for order {n}",
    "please refund the charge on invoice {n}",
    "you billed me twice for {n}",
    "cancel subscription {n} and refund me",
    "the refund for {n} never came through",
]


def messages(templates: list[str], seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(templates).format(n=rng.randint(1000, 9999)) for _ in range(n)]


def test_minilm_embeddings_tell_a_new_topic_from_new_wording() -> None:
    encode = LocalEmbedder().encode
    for test, threshold in (("embedding", 0.05), ("mmd", 0.05)):
        same_topic = DriftDetector(Drift(test, threshold, reference=60, window=60, every=60), encode=encode)
        new_topic = DriftDetector(Drift(test, threshold, reference=60, window=60, every=60), encode=encode)
        same_topic.pin(messages(ORDERS, 1, 60))
        new_topic.pin(messages(ORDERS, 1, 60))
        quiet = [same_topic.add(m) for m in messages(ORDERS, 2, 60)][-1]
        loud = [new_topic.add(m) for m in messages(ORDERS, 3, 30) + messages(REFUNDS, 4, 30)][-1]
        assert quiet is not None and loud is not None
        assert not quiet.drifted, (test, quiet.score)
        assert loud.drifted, (test, loud.score)
        assert loud.score > 2 * quiet.score
