"""Validation gates for model output: schema, plausibility rules, confidence threshold.

A :class:`Validator` turns a model's text into a checked value or says precisely what is
wrong with it; :class:`ValidatedModel` feeds that message back to the model and asks
again, and raises :class:`~orchestrate.errors.InvalidOutputError` when the repairs run
out, so that invalid output never reaches the next step: the step's fallback (another
model, a person) takes over::

    class Refund(pydantic.BaseModel):
        order_id: str
        amount: float = pydantic.Field(gt=0)
        confidence: float

    gate = Validator(
        Refund,
        rules=[lambda r: r.amount <= 500 or "refunds above 500 need a person"],
        min_confidence=0.7,
    )
    model = ValidatedModel(llm, gate, max_repairs=2)
    result = await model.chat("Customer wants order A-17 refunded, it cost 42.50")
    result.data  # Refund(order_id='A-17', amount=42.5, confidence=0.9)

Schemas are pydantic model classes or JSON-schema dicts (``pip install jsonschema``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrate.errors import DefinitionError, InvalidOutputError
from orchestrate.models.base import Message, Model, ModelRequest, ModelResult, ModelSettings, Usage, WrapperModel
from orchestrate.observe.logging import get_logger

Rule = Callable[[Any], "bool | str | None"]
"""A plausibility rule: return ``True``/``None`` when the value is fine, ``False`` or a
message saying what is wrong otherwise."""

log = get_logger()

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class OutputRejected(Exception):  # noqa: N818 - an outcome of a check, caught by ValidatedModel
    """Raised by :meth:`Validator.check`; ``message`` is fed back to the model.

    Attributes:
        message: what is wrong, phrased for the model.
        repairable: ``False`` when asking again cannot help (a confidence below threshold).
    """

    def __init__(self, message: str, *, repairable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.repairable = repairable


@dataclass(frozen=True)
class Validator:
    """Checks an output against a schema, rules and a confidence threshold.

    Args:
        schema: a pydantic model class, a JSON-schema dict, or ``None`` (any JSON).
        rules: plausibility rules run on the parsed value, in order.
        min_confidence: reject values whose confidence is below this.
        confidence: where the confidence is: a field name (attribute or key) or a function.
        expect_json: parse text as JSON (``False`` checks rules on the raw text).
        lenient: accept JSON wrapped in a markdown fence or surrounded by prose.
        repair_low_confidence: ask the model again on low confidence (default: no; a low
            confidence goes straight to the fallback or a person).
    """

    schema: Any = None
    rules: Sequence[Rule] = ()
    min_confidence: float | None = None
    confidence: str | Callable[[Any], float] = "confidence"
    expect_json: bool = True
    lenient: bool = True
    repair_low_confidence: bool = False
    _kind: str = field(default="none", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.schema is None:
            kind = "none"
        elif isinstance(self.schema, type) and callable(getattr(self.schema, "model_validate", None)):
            kind = "pydantic"
        elif isinstance(self.schema, Mapping):
            kind = "jsonschema"
            _jsonschema_validator(self.schema)  # fail at definition time on a bad schema
        else:
            raise DefinitionError(f"schema must be a pydantic model class or a JSON-schema dict, got {self.schema!r}")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise DefinitionError(f"min_confidence must be within [0, 1], got {self.min_confidence!r}")
        if not self.expect_json and self.schema is not None:
            raise DefinitionError("a schema needs expect_json=True")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "_kind", kind)

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the output must match (from the pydantic model if given)."""
        if self._kind == "pydantic":
            return dict(self.schema.model_json_schema())
        if self._kind == "jsonschema":
            return dict(self.schema)
        return None

    def check(self, output: Any) -> Any:
        """The validated value of ``output`` (text, or an already parsed value).

        Raises:
            OutputRejected: with a message for the model.
        """
        value = self._parse(output) if isinstance(output, str) and self.expect_json else output
        value = self._apply_schema(value)
        for rule in self.rules:
            try:
                verdict = rule(value)
            except Exception as exc:  # noqa: BLE001 - a rule that crashes rejects the value
                raise OutputRejected(f"the value broke a rule: {type(exc).__name__}: {exc}") from None
            if verdict is False:
                raise OutputRejected(f"the value failed the check {getattr(rule, '__name__', 'rule')!r}")
            if isinstance(verdict, str):
                raise OutputRejected(verdict)
        if self.min_confidence is not None:
            confidence = self._confidence(value)
            if confidence < self.min_confidence:
                raise OutputRejected(
                    f"confidence {confidence:.2f} is below the threshold {self.min_confidence:.2f}",
                    repairable=self.repair_low_confidence,
                )
        return value

    # internals ------------------------------------------------------------------------
    def _parse(self, text: str) -> Any:
        stripped = text.strip()
        if not stripped:
            raise OutputRejected("the answer was empty; a JSON value was expected")
        if self.lenient:
            fenced = _FENCE.match(stripped)
            if fenced:
                stripped = fenced.group(1).strip()
        if stripped.startswith("<"):
            raise OutputRejected("the answer is XML or HTML; a JSON object was expected")
        try:
            return json.loads(stripped)
        except ValueError as exc:
            if self.lenient:
                embedded = _embedded_json(stripped)
                if embedded is not None:
                    return embedded
            raise OutputRejected(f"the answer is not valid JSON ({exc})") from None

    def _apply_schema(self, value: Any) -> Any:
        if self._kind == "pydantic":
            if isinstance(value, self.schema):
                return value
            try:
                return self.schema.model_validate(value)
            except ValueError as exc:  # pydantic.ValidationError is a ValueError
                raise OutputRejected(_pydantic_message(exc)) from None
        if self._kind == "jsonschema":
            validator = _jsonschema_validator(self.schema)
            problems = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if problems:
                parts = []
                for problem in problems[:5]:
                    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in problem.absolute_path)
                    parts.append(f"at ${where}: {problem.message}")
                raise OutputRejected("the JSON does not match the schema: " + "; ".join(parts))
        return value

    def _confidence(self, value: Any) -> float:
        if callable(self.confidence):
            raw: Any = self.confidence(value)
        elif isinstance(value, Mapping):
            raw = value.get(self.confidence)
        else:
            raw = getattr(value, self.confidence, None)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise OutputRejected(f"the value has no numeric confidence {self.confidence!r}")
        return float(raw)


def _embedded_json(text: str) -> Any:
    """The first JSON object or array inside surrounding prose, if any."""
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text[index:])
            except ValueError:
                continue
            return value
    return None


def _pydantic_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"the JSON does not match the schema: {exc}"
    parts = []
    for error in errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "the value"
        parts.append(f"{where}: {error.get('msg')}")
    return "the JSON does not match the schema: " + "; ".join(parts)


def _jsonschema_validator(schema: Mapping[str, Any]) -> Any:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - depends on the environment
        raise DefinitionError("JSON-schema validation needs the jsonschema package: pip install jsonschema") from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DefinitionError(f"invalid JSON schema: {exc.message}") from None
    return cls(schema)


DEFAULT_FEEDBACK = (
    "Your previous answer was rejected: {error}. "
    "Answer again with only the corrected JSON{schema_hint}. No prose, no markdown, no XML."
)


def validate_output(value: Any, validator: Validator) -> Any:
    """Check a value (e.g. a step's output) and raise :class:`~orchestrate.errors.InvalidOutputError` if bad."""
    try:
        return validator.check(value)
    except OutputRejected as exc:
        text = value if isinstance(value, str) else repr(value)
        raise InvalidOutputError(
            f"output failed validation: {exc.message}", errors=[exc.message], output=text
        ) from None


class ValidatedModel(WrapperModel):
    """Validates every answer; an invalid one is sent back with the error, up to ``max_repairs`` times.

    The result's ``data`` holds the validated value, its ``usage`` sums all attempts and
    ``meta["validation_attempts"]`` counts them (``meta["validation_errors"]`` lists the
    rejected ones). When the repairs run out, or the confidence is too low,
    :class:`~orchestrate.errors.InvalidOutputError` is raised with every message.

    Args:
        wrapped: the model.
        validator: the checks.
        max_repairs: extra attempts after the first invalid answer.
        feedback: template of the repair message, with ``{error}`` and ``{schema_hint}``.
        request_json: ask the provider for JSON (its JSON mode or schema) too.
    """

    def __init__(
        self,
        wrapped: Model,
        validator: Validator,
        *,
        max_repairs: int = 2,
        feedback: str = DEFAULT_FEEDBACK,
        request_json: bool = True,
    ) -> None:
        super().__init__(wrapped)
        if max_repairs < 0:
            raise DefinitionError(f"max_repairs must be >= 0, got {max_repairs!r}")
        self.validator = validator
        self.max_repairs = max_repairs
        self.feedback = feedback
        self.request_json = request_json

    async def request(self, request: ModelRequest) -> ModelResult:
        """Ask, validate, and repair until valid or out of attempts."""
        schema = self.validator.json_schema()
        current = request
        if self.request_json and self.validator.expect_json and request.kind == "chat":
            wanted = ModelSettings(json_schema=schema) if schema is not None else ModelSettings(json_mode=True)
            current = ModelRequest(request.kind, request.messages, request.prompt, wanted.merged(request.settings))
        hint = f" matching this JSON schema: {json.dumps(schema, separators=(',', ':'))}" if schema else ""
        errors: list[str] = []
        usage = Usage()
        text = ""
        for attempt in range(1, self.max_repairs + 2):
            result = await self.wrapped.request(current)
            usage = usage + result.usage
            text = result.text
            try:
                value = self.validator.check(text)
            except OutputRejected as exc:
                errors.append(exc.message)
                log.warning("model_output_rejected", model=result.model, attempt=attempt, error=exc.message)
                if not exc.repairable:
                    break
                repair = Message.user(self.feedback.format(error=exc.message, schema_hint=hint))
                current = current.with_messages([Message.assistant(text), repair])
                continue
            meta: dict[str, Any] = {"validation_attempts": attempt}
            if errors:
                meta["validation_errors"] = list(errors)
            return result.replace(data=value, usage=usage, meta={**result.meta, **meta})
        raise InvalidOutputError(
            f"{self.model_id}: output failed validation after {len(errors)} attempt(s): {errors[-1]}",
            errors=errors,
            output=text,
            model=self.model_id,
        )
