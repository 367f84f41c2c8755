"""Response caches: exact (request hash, in memory or in the run store) and semantic."""

from __future__ import annotations

import pytest

from orchestrate.errors import DefinitionError
from orchestrate.models import CachedModel, ExactCache, ModelSettings, SemanticCache, StoreCacheBackend, Usage
from orchestrate.store import InMemoryStore
from orchestrate.testing.models import FakeEmbedder, FakeModel, Reply, ServerFailure


def answers(*texts: str) -> FakeModel:
    return FakeModel([Reply(t, usage=Usage(50, 10)) for t in texts])


async def test_identical_requests_are_answered_from_the_exact_cache() -> None:
    model = answers("first", "second")
    cached = CachedModel(model, exact=ExactCache())
    miss = await cached.chat("Where is my order?")
    hit = await cached.chat("Where is my order?")
    assert miss.meta["cache"] == "miss" and hit.meta["cache"] == "exact"
    assert hit.text == "first" and len(model.calls) == 1
    assert hit.usage == Usage() and hit.meta["cached_usage"] == [50, 10]  # nothing was spent on the hit
    other = await cached.chat("Where is my order?", settings=ModelSettings(temperature=0.9))
    assert other.text == "second"  # other settings, other key
    assert cached.hits == {"exact": 1, "semantic": 0, "miss": 2}


async def test_exact_entries_expire_after_their_ttl(clock) -> None:
    model = answers("old", "new")
    cached = CachedModel(model, exact=ExactCache(ttl=60, clock=clock))
    await cached.chat("q")
    clock.advance(59)
    assert (await cached.chat("q")).text == "old"
    clock.advance(2)
    assert (await cached.chat("q")).text == "new"


async def test_the_exact_cache_can_live_in_the_run_store() -> None:
    store = InMemoryStore()
    first = CachedModel(answers("stored"), exact=ExactCache(StoreCacheBackend(store)))
    await first.chat("q")
    # Another process (another CachedModel on the same store) gets the hit.
    second_model = answers("never")
    second = CachedModel(second_model, exact=ExactCache(StoreCacheBackend(store)))
    assert (await second.chat("q")).text == "stored" and second_model.calls == []


async def test_failures_are_not_cached() -> None:
    model = FakeModel([ServerFailure(500), "ok"])
    cached = CachedModel(model, exact=ExactCache())
    with pytest.raises(Exception, match="500"):
        await cached.chat("q")
    assert (await cached.chat("q")).text == "ok"


async def test_similar_questions_hit_the_semantic_cache_and_different_ones_miss() -> None:
    model = answers("Track it under Account > Orders.", "Use 'Forgot password'.")
    cached = CachedModel(model, semantic=SemanticCache(FakeEmbedder(), threshold=0.8))
    await cached.chat("where is my order")
    hit = await cached.chat("where is my order now")
    assert hit.meta["cache"] == "semantic" and hit.meta["similarity"] >= 0.8 and hit.cost == 0.0
    miss = await cached.chat("reset my password")
    assert miss.meta["cache"] == "miss" and miss.text == "Use 'Forgot password'."
    assert len(model.calls) == 2


async def test_semantic_entries_are_scoped_by_conversation_and_settings() -> None:
    model = answers("prose", "json")
    cached = CachedModel(model, semantic=SemanticCache(FakeEmbedder(), threshold=0.8))
    await cached.chat("where is my order")
    structured = await cached.chat("where is my order", settings=ModelSettings(json_mode=True))
    assert structured.text == "json"  # a JSON-mode request never gets the prose answer


def test_cached_model_needs_a_cache() -> None:
    with pytest.raises(DefinitionError):
        CachedModel(FakeModel(), exact=None, semantic=None)
    with pytest.raises(DefinitionError):
        SemanticCache(FakeEmbedder(), threshold=0)
