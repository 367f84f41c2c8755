"""``RunContext``: the handle a durable function runs its steps, sleeps and waits with.

A thin public face over the run's state (:class:`~orchestrate._engine.state.RunState`):
each call here turns into the step executor (``steps.py``) or a gate (``gates.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, overload

from orchestrate._engine.gates import await_review
from orchestrate._engine.state import Args, RunState, Suspend, gather_all
from orchestrate._engine.steps import run_step
from orchestrate.errors import StepTimeoutError
from orchestrate.policies import Cache, Fallback, Isolation, Retry, Seconds, Timeout
from orchestrate.review._outcomes import fail_if_expired
from orchestrate.review.gate import HumanReviewGate, ReviewOutcome
from orchestrate.state import StepSchema
from orchestrate.store.base import AttemptState, Event, StepRecord
from orchestrate.types import StepStatus

T = TypeVar("T")


class RunContext(RunState):
    """The handle a durable function uses to run durable steps.

    ``await ctx.step(fn, *args, **policy)`` runs ``fn`` once per run (replayed from the
    store afterwards); ``await ctx.sleep(seconds)``, ``await ctx.wait(key)`` and
    ``await ctx.review(payload, ...)`` park the run without holding a worker.
    """

    @overload
    async def step(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        name: str | None = None,
        key: str | None = None,
        retry: int | Retry | None = None,
        timeout: Seconds | Timeout | None = None,
        fallback: Fallback | Sequence[Fallback] | None = None,
        cache: Seconds | Cache | None = None,
        max_concurrency: int | None = None,
        isolation: Isolation = "auto",
        min_budget: Seconds | None = None,
        schema: StepSchema | None = None,
        **kwargs: Any,
    ) -> T: ...

    @overload
    async def step(
        self,
        fn: Callable[..., T],
        *args: Any,
        name: str | None = None,
        key: str | None = None,
        retry: int | Retry | None = None,
        timeout: Seconds | Timeout | None = None,
        fallback: Fallback | Sequence[Fallback] | None = None,
        cache: Seconds | Cache | None = None,
        max_concurrency: int | None = None,
        isolation: Isolation = "auto",
        min_budget: Seconds | None = None,
        schema: StepSchema | None = None,
        **kwargs: Any,
    ) -> T: ...

    async def step(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` as a durable step and return its output.

        Typed as ``fn`` returns (awaited when ``fn`` is async): ``await ctx.step(f, x)``
        has ``f``'s return type. Policy keywords (``retry``, ``timeout``, ``fallback``, ``cache``,
        ``max_concurrency``, ``isolation``, ``min_budget``, ``schema``) configure the step; other
        keywords are passed to ``fn``. The step key is ``name`` (default: the function's
        name), suffixed ``#2``, ``#3``... on repeated calls, unless ``key`` is given.
        """
        policy_args = {k: kwargs.pop(k) for k in _POLICY_KEYS if k in kwargs}
        step_name = name or str(getattr(fn, "__name__", "step"))
        spec = self.engine.spec_for(fn, step_name, policy_args)
        step_key = key or self._next_key(step_name)
        self.last_key = step_key
        value = Args(args, kwargs)
        output, route = await run_step(self, spec, value, step_key)
        if route is not None:
            return Fallback(route, output)
        return output

    async def gather(self, *aws: Awaitable[Any]) -> list[Any]:
        """Like ``asyncio.gather`` but lets every branch finish or park before parking the run."""
        return await gather_all(aws)

    async def sleep(self, seconds: float, *, key: str | None = None) -> None:
        """Durable sleep: survives restarts; long sleeps release the worker."""
        step_key = f"sleep:{key or self._next_key('sleep')}"
        if step_key in self.recorded:
            return
        now = self.engine.clock.now()
        state = self.attempts.get(step_key)
        if state is None:
            state = AttemptState(
                run_id=self.run_id, step_key=step_key, attempts=0, next_at=now + seconds, first_started_at=now
            )
            await self.engine.store.save_attempts(
                state,
                fence=self.fence,
                event=Event(
                    run_id=self.run_id, kind="timer_set", at=now, step_key=step_key, data={"wake_at": state.next_at}
                ),
            )
            self.attempts[step_key] = state
        await self.delay_until(state.next_at, reason=f"sleep:{step_key}")
        await self.record(
            StepRecord(
                run_id=self.run_id,
                step_key=step_key,
                name=step_key,
                status=StepStatus.SUCCEEDED,
                output=None,
                started_at=state.first_started_at,
                finished_at=self.engine.clock.now(),
            )
        )

    async def wait(self, key: str, *, timeout: float | None = None, payload: Any = None) -> Any:
        """Park until ``Client.signal(run_id, key, value)`` delivers a value; return it.

        Raises:
            StepTimeoutError: no signal came within ``timeout`` seconds.
        """
        step_key = f"wait:{key}"
        found = self.recorded.get(step_key)
        if found is not None:
            return found.output
        now = self.engine.clock.now()
        state = self.attempts.get(step_key)
        if state is None:
            deadline = now + timeout if timeout is not None else float("inf")
            state = AttemptState(
                run_id=self.run_id,
                step_key=step_key,
                attempts=0,
                next_at=deadline if timeout is not None else 0.0,
                first_started_at=now,
            )
            await self.engine.store.save_attempts(
                state,
                fence=self.fence,
                event=Event(
                    run_id=self.run_id,
                    kind="wait_started",
                    at=now,
                    step_key=step_key,
                    data={"timeout": timeout, "payload": payload},
                ),
            )
            self.attempts[step_key] = state
        if timeout is not None and state.next_at and now >= state.next_at:
            raise StepTimeoutError(f"no signal {key!r} for run {self.run_id} within {timeout}s")
        raise Suspend(wake_at=state.next_at or None, reason=f"signal:{key}", signal=step_key)

    async def review(
        self,
        payload: Any,
        *,
        gate: Any = None,
        key: str | None = None,
        step: str | None = None,
        **options: Any,
    ) -> ReviewOutcome:
        """Park until people decide on ``payload``; return how they decided.

        ``gate`` is a :class:`~orchestrate.review.HumanReviewGate` or a
        :class:`~orchestrate.review.TieredGate`; without it the keywords build a
        ``HumanReviewGate`` (``roles=``, ``required_approvals=``, ``timeout=``,
        ``priority=``...). The review's key is ``key`` (default ``review``, numbered
        ``review#2``... on repeated calls); the run waits for ``review:<key>``.

        Returns:
            the outcome: ``approved``, the (possibly edited) ``payload``, ``reason``,
            ``route`` when a rejection or a timeout routes elsewhere, ``timed_out``.
            A person's rejection is returned for your code to act on.

        Raises:
            ReviewExpiredError: nobody decided within the SLA and the gate's
                ``on_timeout`` is ``"fail"`` (the default): expired reviews fail closed.
            RejectedError: the SLA passed and ``on_timeout="reject"``, with no route.
        """
        if gate is None:
            gate = HumanReviewGate(**options)
        elif options:
            raise TypeError(f"ctx.review: give gate= or gate options, not both ({', '.join(sorted(options))})")
        review_key = key or self._next_key("review")
        outcome = await await_review(
            self, gate, key=f"review:{review_key}", step_key=step or self.last_key or review_key, payload=payload
        )
        fail_if_expired(outcome, what=f"review {review_key!r}")
        return outcome


_POLICY_KEYS = ("retry", "timeout", "fallback", "cache", "max_concurrency", "isolation", "min_budget", "schema")
