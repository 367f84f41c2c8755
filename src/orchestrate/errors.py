"""The exception tree of orchestrate.

Every error the library raises derives from :class:`OrchestrateError`::

    OrchestrateError
    ├── DefinitionError            a workflow definition is invalid (names the place)
    │   ├── YamlDefinitionError    a YAML definition has problems (each with file, line, column)
    │   └── ExpressionError        a YAML rule expression does not parse
    ├── EvaluationError            a YAML rule expression failed on a run's value
    ├── InvalidInputError          bad input given to a run, a CLI command or the client
    ├── WorkflowNotFoundError      no workflow of that name is registered
    │   └── WorkflowVersionNotFoundError   the run's pinned version is not available here
    ├── RunNotFoundError           no run with that id in the store
    ├── RunStateError              the operation does not fit the run's status
    ├── RunFailedError             a run awaited by the caller ended failed, dead or cancelled
    ├── RunCrashedError            a run's attempts kept killing their process (it went to the DLQ)
    ├── ApprovalRequired           (control signal) the awaited run parked, waiting for a person
    ├── ConflictError              a write lost a race (e.g. a second decision on a signal)
    ├── NonDeterminismError        a durable function's replay diverged from its history
    ├── StepError                  base of errors raised while running a step
    │   ├── StepTimeoutError       an attempt or the step's total time ran out
    │   │   └── ReviewExpiredError a review's SLA passed and its gate says to fail (the default)
    │   ├── NonRetryableError      raise it (or subclass it) to skip the remaining retries
    │   ├── StepFailedError        retries and fallbacks are exhausted
    │   └── IsolatedProcessError   a process-isolated step died or could not be pickled
    ├── RejectedError              a reviewer rejected a gated step
    ├── ReviewPermissionError      a decision by a role that may not decide the item
    │   └── ServerRequiredError    a decision made without the server on a store that requires it
    ├── ReviewNotFoundError        no review item with that id
    ├── DeadlineExceededError      the run's deadline or time budget ran out
    ├── ModelError                 a model call failed; provider SDK errors are mapped into these
    │   ├── RateLimitedError       429 / quota; ``retry_after`` seconds when the server said
    │   ├── ModelTimeoutError      the call timed out (also a ``TimeoutError``)
    │   ├── ServerError            5xx, overload, lost connection, malformed response
    │   ├── BadRequestError        the server refuses this request as sent (never retried)
    │   ├── ContentFilteredError   the provider refused or filtered the content (never retried)
    │   ├── CircuitOpenError       a circuit breaker is open; ``retry_after`` until it half-opens
    │   ├── InvalidOutputError     the output failed validation after its repair attempts
    │   └── BudgetExceededError    the run's cost budget is spent (never retried)
    ├── AgentError                 an agent broke a rule: step limit, unknown tool, refused approval
    ├── SerializationError         a value could not be stored as JSON
    │   └── PayloadTooLargeError   a value's JSON is over the store's size limit (never retried)
    └── StoreError                 the store failed; driver errors are wrapped in it
        ├── SchemaVersionError     the database schema is newer or older than this code
        ├── StoreAccessError       the store refuses this process (never retried): wrong credentials,
        │                          no such database or host, refused, TLS, read-only, not orchestrate's
        └── LeaseLostError         another worker took over the run; this worker must stop

The YAML errors live in :mod:`orchestrate.yaml`. Control signals that are not errors
(``Suspend``) derive from ``BaseException`` and live in the private engine.
"""

from __future__ import annotations

import traceback
from typing import Any

from orchestrate import _redact


class OrchestrateError(Exception):
    """Root of every error raised by orchestrate."""


class DefinitionError(OrchestrateError):
    """A workflow definition is invalid. The message names the workflow and the place."""


class InvalidInputError(OrchestrateError):
    """Input given to a run, the client or the CLI is malformed."""


class WorkflowNotFoundError(OrchestrateError):
    """No workflow of that name is registered in this process."""


class WorkflowVersionNotFoundError(WorkflowNotFoundError):
    """A run is pinned to a workflow version that this process does not have."""


class RunNotFoundError(OrchestrateError):
    """No run with that id exists in the store."""


class RunStateError(OrchestrateError):
    """The requested operation does not fit the run's current status."""


class RunFailedError(OrchestrateError):
    """A run that the caller awaited ended failed, dead or cancelled.

    Attributes:
        run: the run's record, with its status and error.
    """

    def __init__(self, message: str, *, run: Any) -> None:
        super().__init__(message)
        self.run = run


class RunCrashedError(OrchestrateError):
    """A run's attempts kept killing their worker process; the run went to the dead-letter queue.

    Never raised in a worker: it is what a dead run's ``error`` names, with ``reason``
    ``"crashed"``, the count in ``crashes`` and the last worker in ``owner``, after
    ``max_crashes`` attempts died without recording a step (``os._exit``, a segfault,
    an OOM kill).
    """


class ApprovalRequired(OrchestrateError):  # noqa: N818 - a control signal, not an error
    """The awaited run parked waiting for a person (or an external signal).

    Attributes:
        run: the run's record (status ``waiting``, ``wait_reason`` says for what).
    """

    def __init__(self, message: str, *, run: Any) -> None:
        super().__init__(message)
        self.run = run


class ConflictError(OrchestrateError):
    """A write lost a race: the record already exists with another value."""


class NonDeterminismError(OrchestrateError):
    """A durable function called its steps in another order than its recorded history."""


class StepError(OrchestrateError):
    """Base of the errors raised while executing a step."""


class StepTimeoutError(StepError, TimeoutError):
    """An attempt, or the step as a whole, exceeded its timeout."""


class NonRetryableError(StepError):
    """Raise this (or a subclass) from a step to fail it without further retries."""


class StepFailedError(StepError):
    """A step failed after its retries and fallbacks were exhausted.

    Attributes:
        step: the step key.
        cause_type: qualified name of the last error's class.
    """

    def __init__(self, message: str, *, step: str, cause_type: str) -> None:
        super().__init__(message)
        self.step = step
        self.cause_type = cause_type


class IsolatedProcessError(StepError):
    """A process-isolated step could not be started, was killed, or returned garbage."""


class ReviewExpiredError(StepTimeoutError):
    """Nobody decided a review within its SLA, and its gate fails the run then (fail closed)."""


class RejectedError(OrchestrateError):
    """A reviewer rejected the output of a gated step."""


class ReviewPermissionError(OrchestrateError):
    """A decision by someone whose role may not decide this item (or whose approval check said no)."""


class ServerRequiredError(ReviewPermissionError):
    """A review decision made without the server on a store that requires it.

    ``orchestrate tokens require-server on`` makes a store take review decisions only
    through ``orchestrate serve``, from a principal authenticated by a token.
    """


class ReviewNotFoundError(OrchestrateError):
    """No review item with that id exists in the store."""


class DeadlineExceededError(OrchestrateError):
    """The run's deadline (or time budget) ran out."""


class ModelError(OrchestrateError):
    """A model call failed. Provider SDK errors are mapped into its subclasses.

    Attributes:
        model: id of the model that failed, when known.
        status_code: the HTTP status, when there was one.
        retry_after: seconds the caller should wait before trying again, or ``None``;
            :class:`~orchestrate.policies.Retry` waits at least this long.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.status_code = status_code
        self.retry_after = retry_after


class RateLimitedError(ModelError):
    """The provider rate-limited the call (HTTP 429); ``retry_after`` carries its Retry-After."""


class ModelTimeoutError(ModelError, TimeoutError):
    """The model did not answer in time."""


class ServerError(ModelError):
    """The provider failed: a 5xx, an overload, a lost connection or a malformed response."""


class BadRequestError(ModelError, NonRetryableError):
    """The provider refuses the request as sent (4xx other than 429); retrying cannot help."""


class ContentFilteredError(ModelError, NonRetryableError):
    """The provider refused the prompt or filtered the answer."""


class CircuitOpenError(ModelError):
    """A circuit breaker is open and no fallback was given; ``retry_after`` is when it half-opens."""


class InvalidOutputError(ModelError):
    """A model's output failed validation after its repair attempts.

    Attributes:
        errors: the validation message of each attempt, oldest first.
        output: the last invalid output text.
    """

    def __init__(self, message: str, *, errors: list[str], output: str, model: str | None = None) -> None:
        super().__init__(message, model=model)
        self.errors = errors
        self.output = output


class BudgetExceededError(ModelError, NonRetryableError):
    """The run's cost budget is spent and the budget says to stop.

    Attributes:
        spent: cost so far, in the price table's currency.
        limit: the budget.
    """

    def __init__(self, message: str, *, spent: float, limit: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.limit = limit


class AgentError(OrchestrateError):
    """An agent broke one of its rules: step limit reached, unknown tool, approval refused."""


class SerializationError(OrchestrateError):
    """A value could not be serialised to JSON for the store."""


class PayloadTooLargeError(SerializationError):
    """A value's JSON is larger than the store accepts; nothing of it was written.

    Never retried: the same value would be refused again. Store the value elsewhere
    (a file, an object store) and pass a reference, or raise the limit.

    Attributes:
        size: the value's encoded JSON size, in bytes.
        limit: the limit it is over, in bytes.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class StoreError(OrchestrateError):
    """The store failed. Driver errors are wrapped in this with ``raise ... from``."""


class SchemaVersionError(StoreError):
    """The database schema version does not match what this code understands."""


class StoreAccessError(StoreError):
    """The store cannot be used as configured, and trying again will not change that.

    Wrong credentials, an unknown database, role or host, a refused connection or a TLS
    mismatch when a store is opened; a read-only file, a directory that cannot be
    created, a file that is not an orchestrate database. Never retried: the message
    gives the store's own reason and what to fix.
    """


class LeaseLostError(StoreError):
    """The run's lease was taken over by another worker; this worker's writes are refused."""


TRACEBACK_CHARS = 4000
"""Most characters of a traceback kept with a failed attempt (the innermost frames)."""


def redact_text(text: str) -> str:
    """``text`` with every ``Secret`` value of this process and common credential formats masked.

    Formats: ``sk-…`` and other provider keys, AWS, GitHub and Slack tokens, bearer
    tokens, JWTs, ``api_key=``/``token=``/``password=`` values, a URL's password. Applied
    to every error message and traceback before it is stored or logged.
    """
    return _redact.redact(text)


def format_traceback(exc: BaseException) -> str:
    """The exception's traceback (with its causes), redacted, its last :data:`TRACEBACK_CHARS` kept."""
    parts = [redact_text(part) for part in traceback.format_exception(exc)]
    parts = [part if len(part) <= 1000 else part[:1000] + "...\n" for part in parts]
    head, rest = parts[:1], parts[1:]
    cut = False
    while len(rest) > 1 and len(head[0]) + 4 + sum(map(len, rest)) > TRACEBACK_CHARS:
        rest.pop(0)  # the outermost frames go first: the innermost say what failed
        cut = True
    return ("".join(head) + ("...\n" if cut else "") + "".join(rest))[-TRACEBACK_CHARS:]


def error_info(exc: BaseException, *, with_traceback: bool = False) -> dict[str, Any]:
    """Describe an exception as a JSON-friendly dict that round-trips through the store.

    Keys: ``type`` (module and qualified name), ``name``, ``message`` (secrets redacted),
    ``cause`` (the same three for ``raise ... from``, when there is one) and, with
    ``with_traceback``, ``traceback`` (size-bounded, redacted).
    """
    cls = type(exc)
    info: dict[str, Any] = {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "name": cls.__qualname__,
        "message": redact_text(str(exc)),
    }
    cause = exc.__cause__
    if cause is not None:
        kind = type(cause)
        info["cause"] = {
            "type": f"{kind.__module__}.{kind.__qualname__}",
            "name": kind.__qualname__,
            "message": redact_text(str(cause)),
        }
    if with_traceback and exc.__traceback__ is not None:
        info["traceback"] = format_traceback(exc)
    return info
