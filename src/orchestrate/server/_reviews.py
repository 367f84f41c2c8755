"""Routes of the review inbox: list, get, claim, approve, reject, edit, stats.

A decision is made as the principal of the token (or session) in one of its reviewer
roles that the item allows, never as whoever the body names.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request

from orchestrate.errors import ConflictError, InvalidInputError
from orchestrate.review import ReviewRecord, ReviewStatus
from orchestrate.review.gate import PRIORITIES, self_approval_refusal
from orchestrate.server._auth import OPERATOR, VIEWER, AuthError, Principal
from orchestrate.server._deps import ServerState, audited, decode_cursor, encode_cursor, page_limit, require, state_of
from orchestrate.server._models import Approve, Edit, Reject, ReviewPage, ReviewView, review_view
from orchestrate.store.base import Event

router = APIRouter(prefix="/api/v1", tags=["reviews"])

Action = Literal["approve", "reject", "edit", "claim"]


def decision_role(item: ReviewRecord, who: Principal) -> str | None:
    """The role ``who`` decides ``item`` in.

    The first of the item's required roles not approved yet that ``who`` holds, else the
    first allowed role it holds. An item open to anyone is decided without a role by
    reviewers and operators.

    Raises:
        AuthError: 403 when ``who`` holds none of the item's roles.
    """
    allowed = item.allowed_roles
    done = {a.get("role") for a in item.approvals}
    ordered = [r for r in item.required_roles if r not in done] + allowed
    if who.every_role:
        return ordered[0] if ordered else None
    mine = [r for r in ordered if r in who.reviewer_roles]
    if mine:
        return mine[0]
    if not allowed and (who.reviewer_roles or who.at_least(OPERATOR)):
        return who.reviewer_roles[0] if who.reviewer_roles else None
    wanted = ", ".join(allowed) if allowed else "a reviewer role"
    raise AuthError(
        403, f"{who.name} ({', '.join(who.roles)}) may not decide review {item.review_id}: it needs {wanted}"
    )


async def _item(state: ServerState, review_id: str) -> ReviewRecord:
    return await state.client.get_review(review_id)


async def _check(state: ServerState, item: ReviewRecord, who: Principal, action: Action) -> str | None:
    role = decision_role(item, who)
    if action in ("approve", "edit") and not who.every_role:
        run = await state.client.store.get_run(item.run_id)
        started_by = (run.options or {}).get("started_by") if run is not None else None
        refusal = self_approval_refusal(
            item.meta, started_by=started_by, by=who.name, default=state.settings.self_approval
        )
        if refusal is not None:
            raise AuthError(403, f"review {item.review_id} of run {item.run_id}: {refusal}")
    return role


@router.get("/reviews", response_model=ReviewPage, summary="Review items, most urgent first")
async def list_reviews(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    status: str = "pending",
    role: str | None = None,
    priority: str | None = None,
    run_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> ReviewPage:
    """Review items by priority, then deadline, then age; ``status=all`` for every status."""
    state = state_of(request)
    limit = page_limit(state, limit)
    if priority is not None and priority not in PRIORITIES:
        raise InvalidInputError(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
    offset = decode_cursor(cursor) or 0
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInputError("invalid cursor: pass next_cursor from the previous page")
    statuses: Any = None if status == "all" else [s.strip() for s in status.split(",")]
    wanted = offset + limit + 1
    items = await state.client.list_reviews(
        role=role or None, status=statuses, run_id=run_id or None, limit=wanted if priority is None else 100_000
    )
    if priority is not None:
        items = [i for i in items if i.priority == priority]
    page = items[offset : offset + limit]
    more = len(items) > offset + limit
    return ReviewPage(items=[review_view(i) for i in page], next_cursor=encode_cursor(offset + limit) if more else None)


@router.get("/reviews/{review_id}", response_model=ReviewView, summary="A review item")
async def get_review(
    request: Request, review_id: str, _who: Annotated[Principal, Depends(require(VIEWER))]
) -> ReviewView:
    """The item as stored now (payload masked)."""
    return review_view(await _item(state_of(request), review_id))


@router.post("/reviews/{review_id}/approve", response_model=ReviewView, summary="Approve a review item")
async def approve(
    request: Request,
    review_id: str,
    who: Annotated[Principal, Depends(require(VIEWER))],
    body: Annotated[Approve | None, Body()] = None,
) -> ReviewView:
    """Approve as the token's principal in its role; the run resumes once every approval is in."""
    state = state_of(request)

    async def go() -> ReviewView:
        item = await _item(state, review_id)
        role = await _check(state, item, who, "approve")
        done = await state.client.approve(
            item.review_id, by=who.name, role=role, comment=body.comment if body else None
        )
        state.wake_run(item.run_id)
        return review_view(done)

    return await audited(state, who, "review.approve", review_id, body.model_dump() if body else None, go)


@router.post("/reviews/{review_id}/reject", response_model=ReviewView, summary="Reject a review item")
async def reject(
    request: Request, review_id: str, body: Reject, who: Annotated[Principal, Depends(require(VIEWER))]
) -> ReviewView:
    """Reject with a reason; the run fails or goes where the gate routes rejections."""
    state = state_of(request)

    async def go() -> ReviewView:
        item = await _item(state, review_id)
        role = await _check(state, item, who, "reject")
        done = await state.client.reject(item.review_id, by=who.name, reason=body.reason, role=role)
        state.wake_run(item.run_id)
        return review_view(done)

    return await audited(state, who, "review.reject", review_id, body.model_dump(), go)


@router.post("/reviews/{review_id}/edit", response_model=ReviewView, summary="Approve with a corrected payload")
async def edit(
    request: Request, review_id: str, body: Edit, who: Annotated[Principal, Depends(require(VIEWER))]
) -> ReviewView:
    """Approve with ``payload`` in place of the reviewed one; the changes are recorded."""
    state = state_of(request)

    async def go() -> ReviewView:
        item = await _item(state, review_id)
        if item.meta.get("kind") == "flag":
            raise InvalidInputError(f"review {item.review_id} is a flag: approve or reject it, it takes no edit")
        role = await _check(state, item, who, "edit")
        done = await state.client.edit(item.review_id, body.payload, by=who.name, role=role, comment=body.comment)
        state.wake_run(item.run_id)
        return review_view(done)

    return await audited(state, who, "review.edit", review_id, body.model_dump(), go)


@router.post("/reviews/{review_id}/claim", response_model=ReviewView, summary="Claim a review item")
async def claim(request: Request, review_id: str, who: Annotated[Principal, Depends(require(VIEWER))]) -> ReviewView:
    """Mark the item as being worked on by the principal (others see who has it)."""
    state = state_of(request)
    client = state.client

    async def go() -> ReviewView:
        for _ in range(8):
            item = await _item(state, review_id)
            decision_role(item, who)
            if item.status is not ReviewStatus.PENDING:
                raise ConflictError(f"review {item.review_id} is {item.status.value}; only pending items are claimed")
            holder = item.meta.get("claimed_by")
            if holder not in (None, who.name):
                raise ConflictError(f"review {item.review_id} is claimed by {holder}")
            if holder == who.name:
                return review_view(item)
            now = client.engine.clock.now()
            updated = dataclasses.replace(item, meta={**item.meta, "claimed_by": who.name, "claimed_at": now})
            event = Event(
                run_id=item.run_id,
                kind="review_claimed",
                at=now,
                step_key=item.step_key,
                data={"review_id": item.review_id, "by": who.name},
            )
            if await client.store.update_review(updated, expected_version=item.version, now=now, events=[event]):
                return review_view(await _item(state, item.review_id))
        raise ConflictError(f"review {review_id} changed too often while claiming; try again")

    return await audited(state, who, "review.claim", review_id, None, go)


@router.get("/stats/reviews", tags=["reviews"], summary="Review metrics")
async def review_stats(request: Request, _who: Annotated[Principal, Depends(require(VIEWER))]) -> dict[str, Any]:
    """Counts, escalation rate and time to decision over the review items."""
    return dataclasses.asdict(await state_of(request).client.review_stats())
