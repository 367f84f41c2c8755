"""Routing between models, prices, and the cost ledger with its budget.

A :class:`Router` is a model that picks one of several models for each request, by
rules, by a complexity score or by an intent classifier, without calling any model to
decide (routing is code, not an oracle). It records each call's tokens and cost in a
:class:`CostLedger`, which enforces a per-run :class:`Budget`: once the budget is spent
the router takes its cheap route, or stops with
:class:`~orchestrate.errors.BudgetExceededError`::

    prices = PriceTable({"gpt-4o": Price(2.50, 10.00), "gpt-4o-mini": Price(0.15, 0.60)})
    router = Router(
        {"small": mini, "large": gpt4o},
        rules=[Rule("large", contains=["refund", "legal"])],
        complexity=ComplexityRoute(threshold=0.4, low="small", high="large"),
        default="small",
        cheap="small",
        prices=prices,
    )
    ledger = CostLedger(budget=Budget(max_cost=0.05, on_exceeded="cheap"))
    model = router.bind(ledger)           # one ledger per run
    result = await model.chat("Why was I charged twice? Explain the fees in detail.")
    result.meta["route"], result.cost, ledger.total_cost

The ledger lives in memory. To keep a run's total across a crash, return the
:class:`~orchestrate.models.base.ModelResult` (it carries ``usage`` and ``cost``) from
the step, and rebuild the ledger from recorded results with :meth:`CostLedger.add`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrate.errors import BudgetExceededError, DefinitionError
from orchestrate.models.base import EmbeddingResult, Model, ModelRequest, ModelResult, Usage, _ModelAPI
from orchestrate.observe.logging import get_logger

log = get_logger()


@dataclass(frozen=True)
class Price:
    """Price of a model, per million tokens, in one currency (say USD).

    Args:
        input_per_mtok: per million input (prompt) tokens.
        output_per_mtok: per million output (completion) tokens.
    """

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise DefinitionError("prices must be >= 0")

    def cost(self, usage: Usage) -> float:
        """The cost of ``usage``."""
        return (usage.input_tokens * self.input_per_mtok + usage.output_tokens * self.output_per_mtok) / 1e6


FREE = Price(0.0, 0.0)


class PriceTable:
    """Prices by model id.

    Args:
        prices: ``{model_id: Price}`` (or ``(input, output)`` pairs per million tokens).
        default: price of models not in the table; ``None`` makes an unknown model an
            error, so that a typo cannot make a model look free.
    """

    def __init__(
        self,
        prices: Mapping[str, Price | tuple[float, float]] | None = None,
        *,
        default: Price | None = FREE,
    ) -> None:
        self._prices: dict[str, Price] = {}
        for model_id, price in dict(prices or {}).items():
            self._prices[model_id] = price if isinstance(price, Price) else Price(*price)
        self.default = default

    def price(self, model_id: str) -> Price:
        """The price of ``model_id``.

        Raises:
            DefinitionError: the model is unknown and the table has no default.
        """
        price = self._prices.get(model_id, self.default)
        if price is None:
            raise DefinitionError(f"no price for model {model_id!r}; add it to the PriceTable")
        return price

    def cost(self, model_id: str, usage: Usage) -> float:
        """What ``usage`` of ``model_id`` costs."""
        return self.price(model_id).cost(usage)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._prices


@dataclass(frozen=True)
class Budget:
    """A cost cap for one run.

    Args:
        max_cost: the cap, in the price table's currency.
        on_exceeded: ``"cheap"`` sends further calls to the router's cheap route;
            ``"stop"`` raises :class:`~orchestrate.errors.BudgetExceededError`.
    """

    max_cost: float
    on_exceeded: Literal["cheap", "stop"] = "cheap"

    def __post_init__(self) -> None:
        if not (self.max_cost >= 0 and math.isfinite(self.max_cost)):
            raise DefinitionError(f"Budget.max_cost must be a finite number >= 0, got {self.max_cost!r}")
        if self.on_exceeded not in ("cheap", "stop"):
            raise DefinitionError(f"Budget.on_exceeded must be 'cheap' or 'stop', got {self.on_exceeded!r}")


@dataclass(frozen=True)
class LedgerEntry:
    """One accounted call."""

    model: str
    usage: Usage
    cost: float
    step: str | None = None
    route: str | None = None


@dataclass
class CostLedger:
    """Tokens and cost of a run's model calls, by model and by step, under an optional budget.

    Args:
        budget: the run's cap.
        entries: past entries (to rebuild a ledger from recorded results).
    """

    budget: Budget | None = None
    entries: list[LedgerEntry] = field(default_factory=list)

    def add(self, result: ModelResult, *, step: str | None = None, route: str | None = None) -> None:
        """Account for a result that already carries its ``cost``."""
        self.entries.append(LedgerEntry(result.model, result.usage, result.cost or 0.0, step, route))

    @property
    def total_cost(self) -> float:
        """Cost of every call so far."""
        return sum(e.cost for e in self.entries)

    @property
    def usage(self) -> Usage:
        """Tokens of every call so far."""
        total = Usage()
        for entry in self.entries:
            total = total + entry.usage
        return total

    @property
    def exceeded(self) -> bool:
        """Whether the budget is spent."""
        return self.budget is not None and self.total_cost >= self.budget.max_cost

    @property
    def remaining(self) -> float | None:
        """Budget left (``None`` without a budget)."""
        return None if self.budget is None else max(self.budget.max_cost - self.total_cost, 0.0)

    def by_step(self) -> dict[str, dict[str, float]]:
        """``{step: {"cost", "input_tokens", "output_tokens", "calls"}}``."""
        return self._group(lambda e: e.step or "-")

    def by_model(self) -> dict[str, dict[str, float]]:
        """``{model: {"cost", "input_tokens", "output_tokens", "calls"}}``."""
        return self._group(lambda e: e.model)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (for a step's output or a run's metadata)."""
        usage = self.usage
        return {
            "cost": round(self.total_cost, 8),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "calls": len(self.entries),
            "budget": None if self.budget is None else self.budget.max_cost,
            "exceeded": self.exceeded,
            "by_model": self.by_model(),
        }

    def _group(self, key: Callable[[LedgerEntry], str]) -> dict[str, dict[str, float]]:
        groups: dict[str, dict[str, float]] = {}
        for entry in self.entries:
            group = groups.setdefault(key(entry), {"cost": 0.0, "input_tokens": 0, "output_tokens": 0, "calls": 0})
            group["cost"] += entry.cost
            group["input_tokens"] += entry.usage.input_tokens
            group["output_tokens"] += entry.usage.output_tokens
            group["calls"] += 1
        return groups


# routing ----------------------------------------------------------------------------------

_REASONING = re.compile(
    r"\b(why|explain|compare|analy[sz]e|evaluate|reason|prove|derive|design|plan|trade-?offs?|"
    r"step[- ]by[- ]step|pros and cons|implications?|strategy|debug|diagnose|calculate)\b",
    re.IGNORECASE,
)
_CODE = re.compile(r"```|def |class |SELECT |\{.*:.*\}|Traceback", re.DOTALL)
_CLAUSE = re.compile(r"\b(and|but|because|although|however|unless|while|whereas|then)\b", re.IGNORECASE)


def complexity_score(text: str) -> float:
    """A cheap 0..1 estimate of how hard a request is, with no model call.

    It adds up: reasoning words such as *why*, *explain*, *compare*, *debug* (0.15 each,
    up to 0.45), code or a traceback (0.25), length (up to 0.3 at ~300 words), questions
    after the first (0.1 each, up to 0.2), clause connectives (0.02 each, up to 0.1) and
    numbers (0.01 each, up to 0.05). "Where is my order?" scores ~0.005; a request asking
    why, to explain and to compare scores ~0.5. Route at a threshold of about 0.4.
    """
    words = len(text.split())
    score = min(len(_REASONING.findall(text)) * 0.15, 0.45)
    score += 0.25 if _CODE.search(text) else 0.0
    score += min(words / 300.0, 1.0) * 0.3
    score += min(max(text.count("?") - 1, 0) * 0.1, 0.2)
    score += min(len(_CLAUSE.findall(text)) * 0.02, 0.1)
    score += min(len(re.findall(r"\d+(?:\.\d+)?", text)) * 0.01, 0.05)
    return round(min(score, 1.0), 4)


@dataclass(frozen=True)
class Rule:
    """Send matching requests to ``route``; the first matching rule wins.

    Args:
        route: the route name.
        contains: match when the request's last user text contains any of these words
            or phrases (case-insensitive, whole words).
        pattern: match this regular expression (case-insensitive).
        when: match when this predicate of the request is true.
        max_tokens_over: match when the request allows more than this many output tokens.
    """

    route: str
    contains: Sequence[str] = ()
    pattern: str | None = None
    when: Callable[[ModelRequest], bool] | None = None
    max_tokens_over: int | None = None

    def __post_init__(self) -> None:
        if not (self.contains or self.pattern or self.when or self.max_tokens_over is not None):
            raise DefinitionError(f"Rule({self.route!r}) needs contains=, pattern=, when= or max_tokens_over=")
        if self.pattern is not None:
            re.compile(self.pattern)

    def matches(self, request: ModelRequest) -> bool:
        """Whether the rule applies."""
        text = request.last_user_text()
        if self.contains:
            alternatives = "|".join(re.escape(w) for w in self.contains)
            if re.search(rf"\b(?:{alternatives})\b", text, re.IGNORECASE):
                return True
        if self.pattern is not None and re.search(self.pattern, text, re.IGNORECASE):
            return True
        if self.when is not None and self.when(request):
            return True
        limit = request.settings.max_tokens
        return self.max_tokens_over is not None and limit is not None and limit > self.max_tokens_over


@dataclass(frozen=True)
class ComplexityRoute:
    """Route by :func:`complexity_score` (or your own scorer): below ``threshold`` → ``low``."""

    threshold: float
    low: str
    high: str
    scorer: Callable[[str], float] = complexity_score


@dataclass(frozen=True)
class ClassifierRoute:
    """Route by a classifier's label (e.g. the embedded :class:`~orchestrate.models.local.IntentClassifier`).

    Args:
        classify: ``text -> result`` with ``label`` and ``confidence`` attributes.
        routes: ``{label: route}``; labels not listed fall through to the next strategy.
        min_confidence: below it, the label is ignored.
    """

    classify: Callable[[str], Any]
    routes: Mapping[str, str]
    min_confidence: float = 0.0


@dataclass(frozen=True)
class RouteDecision:
    """Which route the router chose and why."""

    route: str
    reason: str
    score: float | None = None


class Router(_ModelAPI):
    """A model that routes each request to one of several models, accounting tokens and cost.

    The strategies are tried in order: ``rules``, then ``classifier``, then
    ``complexity``, then ``default``. When the bound ledger's budget is spent, every
    request goes to ``cheap`` (``on_exceeded="cheap"``) or is refused
    (``on_exceeded="stop"``).

    Args:
        routes: ``{name: model}``.
        rules: :class:`Rule` s, first match wins.
        classifier: a :class:`ClassifierRoute`.
        complexity: a :class:`ComplexityRoute`.
        default: the route when nothing else decides.
        cheap: the route taken once the budget is spent (default: ``default``).
        prices: the price table for cost accounting.
        ledger: where calls are accounted; see :meth:`bind` for one ledger per run.
        step: label recorded with each ledger entry.
    """

    def __init__(
        self,
        routes: Mapping[str, Model],
        *,
        rules: Iterable[Rule] = (),
        classifier: ClassifierRoute | None = None,
        complexity: ComplexityRoute | None = None,
        default: str,
        cheap: str | None = None,
        prices: PriceTable | None = None,
        ledger: CostLedger | None = None,
        step: str | None = None,
    ) -> None:
        self.routes = dict(routes)
        if not self.routes:
            raise DefinitionError("a Router needs at least one route")
        self.rules = tuple(rules)
        self.classifier = classifier
        self.complexity = complexity
        self.default = default
        self.cheap = cheap or default
        names = [default, self.cheap, *(r.route for r in self.rules)]
        if classifier is not None:
            names += list(classifier.routes.values())
        if complexity is not None:
            names += [complexity.low, complexity.high]
        unknown = sorted({n for n in names if n not in self.routes})
        if unknown:
            raise DefinitionError(f"Router: unknown route(s) {unknown}; known: {sorted(self.routes)}")
        self.prices = prices or PriceTable()
        self.ledger = ledger
        self.step = step

    @property
    def model_id(self) -> str:
        """``router:<default model>``."""
        return f"router:{self.routes[self.default].model_id}"

    def bind(self, ledger: CostLedger, *, step: str | None = None) -> Router:
        """The same router accounting into ``ledger`` (one per run)."""
        clone = object.__new__(Router)
        clone.__dict__.update(self.__dict__)
        clone.ledger = ledger
        clone.step = step if step is not None else self.step
        return clone

    def decide(self, request: ModelRequest) -> RouteDecision:
        """Choose a route for ``request`` (pure: no model is called, the budget is not checked)."""
        for rule in self.rules:
            if rule.matches(request):
                return RouteDecision(rule.route, "rule")
        text = request.last_user_text()
        if self.classifier is not None:
            verdict = self.classifier.classify(text)
            label, confidence = getattr(verdict, "label", None), float(getattr(verdict, "confidence", 0.0))
            if (
                isinstance(label, str)
                and label in self.classifier.routes
                and confidence >= self.classifier.min_confidence
            ):
                return RouteDecision(self.classifier.routes[label], f"classifier:{label}", confidence)
        if self.complexity is not None:
            score = self.complexity.scorer(text)
            route = self.complexity.high if score >= self.complexity.threshold else self.complexity.low
            return RouteDecision(route, "complexity", score)
        return RouteDecision(self.default, "default")

    async def request(self, request: ModelRequest) -> ModelResult:
        """Route, call, and account the call's tokens and cost."""
        decision = self.decide(request)
        ledger = self.ledger
        if ledger is not None and ledger.exceeded:
            assert ledger.budget is not None
            if ledger.budget.on_exceeded == "stop":
                raise BudgetExceededError(
                    f"the run's cost budget of {ledger.budget.max_cost:g} is spent "
                    f"({ledger.total_cost:.6f} so far); no further model calls",
                    spent=ledger.total_cost,
                    limit=ledger.budget.max_cost,
                )
            if decision.route != self.cheap:
                log.warning("budget_cheap_route", spent=round(ledger.total_cost, 6), route=self.cheap)
                decision = RouteDecision(self.cheap, "budget", decision.score)
        result = await self.routes[decision.route].request(request)
        cost = self.prices.cost(result.model, result.usage)
        meta: dict[str, Any] = {"route": decision.route, "route_reason": decision.reason}
        if decision.score is not None:
            meta["route_score"] = decision.score
        result = result.replace(cost=cost, meta={**result.meta, **meta})
        if ledger is not None:
            ledger.add(result, step=self.step, route=decision.route)
        return result

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed with the default route's model."""
        return await self.routes[self.default].embed(texts)

    def __repr__(self) -> str:
        return f"Router({sorted(self.routes)!r}, default={self.default!r})"


class AccountedModel(_ModelAPI):
    """Prices every call of one model into a ledger (use it where no routing is wanted).

    Args:
        wrapped: the model.
        prices: the price table.
        ledger: where calls are accounted.
        step: label recorded with each entry.
    """

    def __init__(self, wrapped: Model, prices: PriceTable, ledger: CostLedger, *, step: str | None = None) -> None:
        self.wrapped = wrapped
        self.prices = prices
        self.ledger = ledger
        self.step = step

    @property
    def model_id(self) -> str:
        """The wrapped model's id."""
        return self.wrapped.model_id

    async def request(self, request: ModelRequest) -> ModelResult:
        """Call, price, account; refuse when a ``stop`` budget is spent."""
        budget = self.ledger.budget
        if budget is not None and self.ledger.exceeded and budget.on_exceeded == "stop":
            raise BudgetExceededError(
                f"the run's cost budget of {budget.max_cost:g} is spent ({self.ledger.total_cost:.6f} so far)",
                spent=self.ledger.total_cost,
                limit=budget.max_cost,
            )
        result = await self.wrapped.request(request)
        result = result.replace(cost=self.prices.cost(result.model, result.usage))
        self.ledger.add(result, step=self.step)
        return result

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed (not priced)."""
        return await self.wrapped.embed(texts)
