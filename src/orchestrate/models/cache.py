"""Caching of model responses: exact (a hash of the request) and semantic (similar inputs).

:class:`CachedModel` answers from its caches before calling the model, and marks a hit
in the result's ``meta["cache"]`` (``"exact"`` or ``"semantic"``, with the similarity)
so that a step returning the result records it. The exact cache keeps entries in a
:class:`CacheBackend`: in memory, or the run store through :class:`StoreCacheBackend`
(any object with the store's ``cache_get``/``cache_put``)::

    model = CachedModel(llm, exact=ExactCache(ttl=3600),
                        semantic=SemanticCache(embedder, threshold=0.92))
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol

from orchestrate.errors import DefinitionError
from orchestrate.models.base import (
    Clock,
    EmbeddingResult,
    Model,
    ModelRequest,
    ModelResult,
    MonotonicClock,
    Usage,
    WrapperModel,
)


def request_key(model_id: str, request: ModelRequest) -> str:
    """A stable hash of the model and everything in the request that shapes the answer."""
    settings = asdict(request.settings)
    payload = {
        "model": model_id,
        "kind": request.kind,
        "messages": [m.to_dict() for m in request.messages],
        "prompt": request.prompt,
        "settings": settings,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "model:" + hashlib.sha256(blob.encode()).hexdigest()


class CacheBackend(Protocol):
    """Where exact-cache entries live."""

    async def get(self, key: str) -> tuple[dict[str, Any], float] | None:
        """The stored value and the time it was stored, or ``None``."""
        ...

    async def put(self, key: str, value: dict[str, Any], *, now: float) -> None:
        """Store ``value`` under ``key``."""
        ...


class MemoryCacheBackend:
    """An in-process LRU map.

    Args:
        max_entries: least recently used entries are dropped beyond this.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    async def get(self, key: str) -> tuple[dict[str, Any], float] | None:
        """The entry, refreshed as recently used."""
        entry = self._data.get(key)
        if entry is not None:
            self._data.move_to_end(key)
        return entry

    async def put(self, key: str, value: dict[str, Any], *, now: float) -> None:
        """Store, evicting the least recently used entry when full."""
        self._data[key] = (value, now)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)


class StoreCacheBackend:
    """Keeps entries in the run store's cache table (shared by every worker on that store).

    Args:
        store: an object with ``cache_get(key)`` and ``cache_put(key, value, now=)``,
            such as an orchestrate ``Store``.
        clock_now: the store's notion of now (POSIX seconds) for ``stored_at``.
    """

    def __init__(self, store: Any) -> None:
        if not (hasattr(store, "cache_get") and hasattr(store, "cache_put")):
            raise DefinitionError("StoreCacheBackend needs an object with cache_get and cache_put")
        self.store = store

    async def get(self, key: str) -> tuple[dict[str, Any], float] | None:
        """The entry from the store."""
        entry = await self.store.cache_get(key)
        if entry is None or not isinstance(entry.value, dict):
            return None
        return entry.value, float(entry.stored_at)

    async def put(self, key: str, value: dict[str, Any], *, now: float) -> None:
        """Store the entry."""
        await self.store.cache_put(key, value, now=now)


def _dump(result: ModelResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "model": result.model,
        "usage": [result.usage.input_tokens, result.usage.output_tokens],
        "version": result.version,
        "provider": result.provider,
        "finish_reason": result.finish_reason,
    }


def _load(value: dict[str, Any]) -> ModelResult:
    tokens = value.get("usage") or [0, 0]
    return ModelResult(
        text=str(value.get("text", "")),
        model=str(value.get("model", "")),
        usage=Usage(int(tokens[0]), int(tokens[1])),
        latency_s=0.0,
        version=value.get("version"),
        provider=value.get("provider"),
        finish_reason=value.get("finish_reason"),
    )


class ExactCache:
    """Identical requests to the same model get the stored answer.

    Args:
        backend: where entries live (default: in memory).
        ttl: seconds an entry stays fresh (``None``: forever).
        clock: time source for ``ttl`` (POSIX seconds when shared through a store).
    """

    def __init__(
        self, backend: CacheBackend | None = None, *, ttl: float | None = None, clock: Clock | None = None
    ) -> None:
        if ttl is not None and ttl <= 0:
            raise DefinitionError(f"ttl must be positive, got {ttl!r}")
        self.backend: CacheBackend = backend or MemoryCacheBackend()
        self.ttl = ttl
        self.clock: Clock = clock or MonotonicClock()

    async def get(self, model_id: str, request: ModelRequest) -> ModelResult | None:
        """A fresh stored answer, or ``None``."""
        entry = await self.backend.get(request_key(model_id, request))
        if entry is None:
            return None
        value, stored_at = entry
        if self.ttl is not None and self.clock.now() - stored_at > self.ttl:
            return None
        return _load(value)

    async def put(self, model_id: str, request: ModelRequest, result: ModelResult) -> None:
        """Store an answer."""
        await self.backend.put(request_key(model_id, request), _dump(result), now=self.clock.now())


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class SemanticCache:
    """Requests *similar enough* to a past one get its answer.

    Only the request's last user text is embedded; entries are kept per model and per
    settings, so a JSON-mode request never gets a prose answer. Pick ``threshold`` from
    data: with all-MiniLM-L6-v2, paraphrases of one support question score around
    0.75-0.95 and different questions on one topic 0.5-0.8 (see ``docs/models.md``).

    Args:
        embedder: any model with ``embed`` (the embedded MiniLM, a provider's embeddings).
        threshold: minimum cosine similarity for a hit.
        max_entries: oldest entries are dropped beyond this.
        ttl: seconds an entry stays usable (``None``: forever).
        clock: time source for ``ttl``.
    """

    def __init__(
        self,
        embedder: Model,
        *,
        threshold: float = 0.9,
        max_entries: int = 1_000,
        ttl: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not 0 < threshold <= 1:
            raise DefinitionError(f"threshold must be within (0, 1], got {threshold!r}")
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock: Clock = clock or MonotonicClock()
        self._entries: list[tuple[str, list[float], ModelResult, float]] = []

    @staticmethod
    def _scope(model_id: str, request: ModelRequest) -> str:
        context = ModelRequest(request.kind, request.messages[:-1], "", request.settings)
        return request_key(model_id, context)

    async def _vector(self, text: str) -> list[float]:
        result: EmbeddingResult = await self.embedder.embed([text])
        return result.vectors[0]

    async def lookup(self, model_id: str, request: ModelRequest) -> tuple[ModelResult, float] | None:
        """The best stored answer above the threshold and its similarity, or ``None``."""
        scope = self._scope(model_id, request)
        now = self.clock.now()
        candidates = [e for e in self._entries if e[0] == scope and (self.ttl is None or now - e[3] <= self.ttl)]
        if not candidates:
            return None
        vector = await self._vector(request.last_user_text())
        best: tuple[ModelResult, float] | None = None
        for _, other, result, _stored in candidates:
            similarity = cosine(vector, other)
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (result, similarity)
        return best

    async def put(self, model_id: str, request: ModelRequest, result: ModelResult) -> None:
        """Remember an answer."""
        vector = await self._vector(request.last_user_text())
        self._entries.append((self._scope(model_id, request), vector, result, self.clock.now()))
        if len(self._entries) > self.max_entries:
            del self._entries[: len(self._entries) - self.max_entries]


class CachedModel(WrapperModel):
    """Answers from the caches when it can; otherwise calls the model and stores the answer.

    A hit returns the stored result with ``latency_s=0``, zero ``usage`` (nothing was
    spent) and ``meta["cache"]`` set; misses are marked ``meta["cache"] = "miss"``.

    Args:
        wrapped: the model.
        exact: an :class:`ExactCache`.
        semantic: a :class:`SemanticCache`.
    """

    def __init__(
        self, wrapped: Model, *, exact: ExactCache | None = None, semantic: SemanticCache | None = None
    ) -> None:
        super().__init__(wrapped)
        if exact is None and semantic is None:
            raise DefinitionError("CachedModel needs an exact cache, a semantic cache, or both")
        self.exact = exact
        self.semantic = semantic
        self.hits = {"exact": 0, "semantic": 0, "miss": 0}

    async def request(self, request: ModelRequest) -> ModelResult:
        """Serve from cache, or call and store."""
        model_id = self.wrapped.model_id
        if self.exact is not None:
            hit = await self.exact.get(model_id, request)
            if hit is not None:
                self.hits["exact"] += 1
                return hit.replace(usage=Usage(), latency_s=0.0, meta={"cache": "exact", "cached_usage": _usage(hit)})
        if self.semantic is not None:
            found = await self.semantic.lookup(model_id, request)
            if found is not None:
                self.hits["semantic"] += 1
                result, similarity = found
                meta = {"cache": "semantic", "similarity": round(similarity, 4), "cached_usage": _usage(result)}
                return result.replace(usage=Usage(), latency_s=0.0, cost=0.0, meta=meta)
        self.hits["miss"] += 1
        result = await self.wrapped.request(request)
        if result.finish_reason in (None, "stop", "length"):
            if self.exact is not None:
                await self.exact.put(model_id, request, result)
            if self.semantic is not None:
                await self.semantic.put(model_id, request, result)
        return result.with_meta(cache="miss")


def _usage(result: ModelResult) -> list[int]:
    return [result.usage.input_tokens, result.usage.output_tokens]
