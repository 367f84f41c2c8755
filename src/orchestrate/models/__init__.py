"""Models: providers, embedded local models, routing, reliability, validation, caching.

The core (protocol, wrappers, router, validation) needs no extra. Providers and local
models import their SDK only when first used, each behind an extra:

======================================  ========================================
``OpenAICompatModel``                   ``pip install 'orchestrate-ai[openai]'``
``AnthropicModel``                      ``pip install 'orchestrate-ai[anthropic]'``
``OllamaModel``                         ``pip install 'orchestrate-ai[ollama]'``
``LocalEmbedder``, ``IntentClassifier``,  ``pip install 'orchestrate-ai[local]'``
``Retriever``, ``LlamaCppModel``...
======================================  ========================================
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orchestrate.models.base import (
    BaseProvider,
    Clock,
    EmbeddingResult,
    Message,
    Model,
    ModelRequest,
    ModelResult,
    ModelSettings,
    MonotonicClock,
    ToolSpec,
    ToolUse,
    Usage,
    WrapperModel,
)
from orchestrate.models.cache import CachedModel, ExactCache, MemoryCacheBackend, SemanticCache, StoreCacheBackend
from orchestrate.models.reliability import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerModel,
    FailoverModel,
    HedgedModel,
    RateLimitedModel,
    RateLimiter,
)
from orchestrate.models.router import (
    AccountedModel,
    Budget,
    ClassifierRoute,
    ComplexityRoute,
    CostLedger,
    Price,
    PriceTable,
    RouteDecision,
    Router,
    Rule,
    complexity_score,
)
from orchestrate.models.secrets import Redactor, Secret
from orchestrate.models.validation import ValidatedModel, Validator, validate_output

if TYPE_CHECKING:
    from orchestrate.models.anthropic import AnthropicModel
    from orchestrate.models.local import (
        Document,
        FewShotClassifier,
        FewShotPrompt,
        Hit,
        Intent,
        IntentClassifier,
        LlamaCppModel,
        LocalEmbedder,
        Retriever,
        support_intents,
        support_knowledge_base,
    )
    from orchestrate.models.ollama import OllamaModel
    from orchestrate.models.openai_compat import OpenAICompatModel

_LAZY = {
    "OpenAICompatModel": "orchestrate.models.openai_compat",
    "AnthropicModel": "orchestrate.models.anthropic",
    "OllamaModel": "orchestrate.models.ollama",
    "Document": "orchestrate.models.local",
    "FewShotClassifier": "orchestrate.models.local",
    "FewShotPrompt": "orchestrate.models.local",
    "Hit": "orchestrate.models.local",
    "Intent": "orchestrate.models.local",
    "IntentClassifier": "orchestrate.models.local",
    "LlamaCppModel": "orchestrate.models.local",
    "LocalEmbedder": "orchestrate.models.local",
    "Retriever": "orchestrate.models.local",
    "support_intents": "orchestrate.models.local",
    "support_knowledge_base": "orchestrate.models.local",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrate.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AccountedModel",
    "AnthropicModel",
    "BaseProvider",
    "BreakerState",
    "Budget",
    "CachedModel",
    "CircuitBreaker",
    "CircuitBreakerModel",
    "ClassifierRoute",
    "Clock",
    "ComplexityRoute",
    "CostLedger",
    "Document",
    "EmbeddingResult",
    "ExactCache",
    "FailoverModel",
    "FewShotClassifier",
    "FewShotPrompt",
    "HedgedModel",
    "Hit",
    "Intent",
    "IntentClassifier",
    "LlamaCppModel",
    "LocalEmbedder",
    "MemoryCacheBackend",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResult",
    "ModelSettings",
    "MonotonicClock",
    "OllamaModel",
    "OpenAICompatModel",
    "Price",
    "PriceTable",
    "RateLimitedModel",
    "RateLimiter",
    "Redactor",
    "Retriever",
    "RouteDecision",
    "Router",
    "Rule",
    "Secret",
    "SemanticCache",
    "StoreCacheBackend",
    "ToolSpec",
    "ToolUse",
    "Usage",
    "ValidatedModel",
    "Validator",
    "WrapperModel",
    "complexity_score",
    "support_intents",
    "support_knowledge_base",
    "validate_output",
]
