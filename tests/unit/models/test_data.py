"""The shipped labelled support messages and knowledge base are well formed."""

from __future__ import annotations

from collections import Counter

from orchestrate.models.local import support_intents, support_knowledge_base


def test_the_labelled_set_is_large_balanced_and_split() -> None:
    rows = support_intents()
    assert len(rows) >= 200
    counts = Counter(r["intent"] for r in rows)
    assert len(counts) >= 5 and min(counts.values()) >= 30
    texts = [r["text"].strip().lower() for r in rows]
    assert len(set(texts)) == len(texts)  # no duplicates, so the test split is unseen
    train, test = support_intents("train"), support_intents("test")
    assert len(train) + len(test) == len(rows)
    assert {r["intent"] for r in train} == set(counts) and all(
        n == len(train) // len(counts) for n in Counter(r["intent"] for r in train).values()
    )
    assert not {r["text"] for r in train} & {r["text"] for r in test}


def test_the_knowledge_base_has_unique_titled_articles() -> None:
    docs = support_knowledge_base()
    assert len(docs) >= 15
    assert len({d.id for d in docs}) == len(docs)
    assert all(d.title and len(d.text) > 80 for d in docs)
