"""``orchestrate reviews …``: the review queue: list, show, approve, reject, edit, stats.

Decisions go through :class:`orchestrate.Client` with the same checks as everywhere: a
role that may not decide is refused, a decided item answers with a conflict. ``--by``
defaults to ``$ORCHESTRATE_USER``, then the login name. A final decision makes the run
due at once; a worker resumes it, or this command with ``--resume``.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrate.cli._common import (
    app_option,
    console,
    dump_json,
    echo,
    json_option,
    log_level_option,
    run_async,
    setup_logging,
    shown,
    store_option,
    with_client,
)
from orchestrate.cli.loading import JSON_VALUE
from orchestrate.cli.runs import drive_and_show
from orchestrate.client import Client
from orchestrate.review import ReviewRecord, ReviewStatus

REVIEW_STYLES: dict[ReviewStatus, str] = {
    ReviewStatus.PENDING: "bold yellow",
    ReviewStatus.APPROVED: "bold green",
    ReviewStatus.REJECTED: "bold red",
    ReviewStatus.ESCALATED: "magenta",
    ReviewStatus.EXPIRED: "red",
    ReviewStatus.CANCELLED: "dim",
}
PRIORITY_STYLES = {"urgent": "bold red", "high": "red", "normal": "", "low": "dim"}
STATUSES = [s.value for s in ReviewStatus] + ["all"]


@click.group("reviews", invoke_without_command=True)
@click.pass_context
def reviews(ctx: click.Context) -> None:
    """The review queue: items that runs wait on until people decide."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _default_user() -> str:
    found = os.environ.get("ORCHESTRATE_USER")
    if found:
        return found
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def _by_option(fn: Any) -> Any:
    return click.option(
        "--by",
        metavar="WHO",
        default=_default_user,
        show_default="$ORCHESTRATE_USER or your login",
        help="Who decides.",
    )(fn)


def _role_option(fn: Any) -> Any:
    return click.option("--role", metavar="ROLE", help="The role you decide in (required when the item names roles).")(
        fn
    )


def _resume_options(fn: Any) -> Any:
    fn = app_option("With --resume: the run's workflow, FILE.yaml, path/to/file.py:NAME or module:NAME")(fn)
    return click.option("--resume", is_flag=True, help="Then drive the run in this process and print its timeline.")(fn)


# formatting -----------------------------------------------------------------------------------


def _left(due_at: float | None, now: float) -> Text:
    if due_at is None:
        return Text("-", style="dim")
    left = due_at - now
    text = _duration(abs(left))
    if left < 0:
        return Text(f"overdue {text}", style="bold red")
    return Text(text, style="yellow" if left < 600 else "")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _roles(item: ReviewRecord) -> str:
    if item.required_roles:
        have = {a.get("role") for a in item.approvals}
        return " + ".join(f"{r}{' ✓' if r in have else ''}" for r in item.required_roles)
    return ", ".join(item.roles) or "anyone"


def _approvals(item: ReviewRecord) -> str:
    needed = max(len(item.required_roles), item.min_approvals)
    return f"{len(item.approvals)}/{needed}"


def _summary(value: Any, size: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= size else text[: size - 1] + "…"


def reviews_table(items: Sequence[ReviewRecord], *, title: str, now: float, width: int = 200) -> Table:
    """The table of ``reviews list``; narrower consoles get fewer columns."""
    wide = width >= 130
    table = Table(box=box.SIMPLE_HEAD, title=Text(title, style="bold"), title_justify="left", pad_edge=False)
    table.add_column("review", no_wrap=True, style="cyan")
    table.add_column("priority", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("roles", overflow="fold", min_width=10)
    table.add_column("approvals", no_wrap=True, justify="right")
    table.add_column("SLA left", no_wrap=True)
    if wide:
        table.add_column("run", no_wrap=True, style="dim")
        table.add_column("step", overflow="fold")
    table.add_column("payload", overflow="ellipsis", ratio=1, min_width=12)
    for item in items:
        cells: list[Text | str] = [
            Text(item.review_id),
            Text(item.priority, style=PRIORITY_STYLES.get(item.priority, "")),
            Text(item.status.value, style=REVIEW_STYLES.get(item.status, "")),
            _roles(item) + (f" (escalation {item.level})" if item.level else ""),
            _approvals(item),
            _left(item.due_at if item.status is ReviewStatus.PENDING else None, now),
        ]
        if wide:
            cells += [item.run_id, f"{item.workflow}:{item.step_key}"]
        cells.append(_summary(item.payload, 80 if wide else 40))
        table.add_row(*cells)
    return table


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def print_review(item: ReviewRecord, out: Console, now: float) -> None:
    """One item in full: what is asked, of whom, by when, and what was decided."""
    out.print(
        Text.assemble(
            ("review ", "bold"),
            (item.review_id, "bold cyan"),
            "  ",
            (item.status.value, REVIEW_STYLES.get(item.status, "")),
            "  priority ",
            (item.priority, PRIORITY_STYLES.get(item.priority, "")),
        )
    )
    rows = [
        ("run", f"{item.run_id} ({item.workflow}), step {item.step_key}, waits on {item.gate_key}"),
        ("queue", item.queue + (f", escalation level {item.level} of {item.parent_id}" if item.level else "")),
        ("may decide", ", ".join(item.allowed_roles) or "anyone"),
        ("required", (", ".join(item.required_roles) or "-") + f"; at least {item.min_approvals} reviewer(s)"),
        ("created", _when(item.created_at)),
    ]
    if item.due_at is not None:
        timeout = (item.meta or {}).get("on_timeout") or "fail"
        left = _left(item.due_at, now).plain if item.status is ReviewStatus.PENDING else "-"
        rows.append(("SLA", f"{_duration(item.sla_seconds or 0)}, due {_when(item.due_at)} ({left}); then {timeout}"))
    if (item.meta or {}).get("tier"):
        rows.append(("tier", str(item.meta["tier"])))
    for name, value in rows:
        out.print(Text.assemble((f"  {name:<11}", "dim"), value))
    out.print(Text("  payload", style="dim"))
    out.print(json.dumps(item.payload, indent=2, ensure_ascii=False, default=str), markup=False, highlight=False)
    for entry in item.approvals:
        what = entry.get("outcome", "approved")
        line = f"  {what} by {entry.get('by')} ({entry.get('role') or 'no role'}) at {_when(entry.get('at'))}"
        out.print(Text(line, style="green"))
        for field, change in (entry.get("changes") or {}).items():
            before, after = _summary(change.get("before"), 50), _summary(change.get("after"), 50)
            out.print(Text(f"      {field}: {before} -> {after}", style="dim"))
        if entry.get("comment"):
            out.print(Text(f"      {entry['comment']}", style="dim"))
    if item.decision is not None and item.status is not ReviewStatus.APPROVED:
        decision = item.decision
        text = f"  {decision.get('outcome')} by {decision.get('by')} at {_when(decision.get('at'))}"
        if decision.get("reason"):
            text += f": {decision['reason']}"
        if decision.get("to"):
            text += f" -> {decision['to']} ({item.escalated_to})"
        out.print(Text(text, style=REVIEW_STYLES.get(item.status, "")))


# commands -------------------------------------------------------------------------------------


@reviews.command("list")
@click.option("--role", metavar="ROLE", help="Only items this role may decide (items open to anyone included).")
@click.option(
    "--status", type=click.Choice(STATUSES), default="pending", show_default=True, help="Items of this status."
)
@click.option("--run", "run_id", metavar="RUN", help="Only this run's items.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Items shown.")
@store_option
@json_option
@log_level_option()
def list_reviews(
    role: str | None, status: str, run_id: str | None, limit: int, store: str, as_json: bool, log_level: str
) -> int:
    """List review items, most urgent first (priority, then deadline, then age)."""
    setup_logging(log_level)

    async def go(client: Client) -> list[ReviewRecord]:
        return await client.list_reviews(
            role=role, status=None if status == "all" else status, run_id=run_id, limit=limit
        )

    items = shown(run_async(with_client(store, go, read_only=True)))
    if as_json:
        dump_json([item.to_dict() for item in items])
        return 0
    out = console()
    if not items:
        who = f" for role {role}" if role else ""
        out.print(Text(f"no {'' if status == 'all' else status + ' '}review items{who}", style="dim"))
        return 0
    title = f"reviews ({status}{', role ' + role if role else ''})"
    out.print(reviews_table(items, title=title, now=time.time(), width=out.width))
    return 0


@reviews.command("show")
@click.argument("review_id", metavar="ID")
@store_option
@json_option
@log_level_option()
def show_review(review_id: str, store: str, as_json: bool, log_level: str) -> int:
    """Show one item: its payload, who may decide, its SLA, and its decisions."""
    setup_logging(log_level)

    async def go(client: Client) -> ReviewRecord:
        return await client.get_review(review_id)

    item = shown(run_async(with_client(store, go, read_only=True)))
    if as_json:
        dump_json(item.to_dict())
    else:
        print_review(item, console(), time.time())
    return 0


def _report(item: ReviewRecord, verb: str) -> None:
    if item.status is ReviewStatus.PENDING:
        have = {a.get("role") for a in item.approvals}
        missing = [r for r in item.required_roles if r not in have]
        still = f"waiting for {', '.join(missing)}" if missing else f"waiting for {_approvals(item)} approvals"
        echo(f"{verb} review {item.review_id} ({_approvals(item)}); {still}")
        return
    echo(f"{verb} review {item.review_id}: {item.status.value}; run {item.run_id} is due to resume")


def _decide(store: str, review_id: str, action: str, resume: bool, apps: Sequence[str], **kwargs: Any) -> int:
    async def go(client: Client) -> ReviewRecord:
        if action == "approve":
            return await client.approve(review_id, **kwargs)
        if action == "reject":
            return await client.reject(review_id, **kwargs)
        return await client.edit(review_id, **kwargs)

    item = run_async(with_client(store, go))
    _report(item, {"approve": "approved", "reject": "rejected", "edit": "edited and approved"}[action])
    if resume and item.status.final:
        return drive_and_show(store, item.run_id, apps, or_leave=True)
    return 0


@reviews.command("approve")
@click.argument("review_id", metavar="ID")
@_by_option
@_role_option
@click.option("--comment", metavar="TEXT", help="A note recorded with the approval.")
@_resume_options
@store_option
@log_level_option()
def approve_review(
    review_id: str,
    by: str,
    role: str | None,
    comment: str | None,
    resume: bool,
    apps: tuple[str, ...],
    store: str,
    log_level: str,
) -> int:
    """Approve item ID; the run resumes once every required role has approved."""
    setup_logging(log_level)
    return _decide(store, review_id, "approve", resume, apps, by=by, role=role, comment=comment)


@reviews.command("reject")
@click.argument("review_id", metavar="ID")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded, and shown in the run's error).")
@_by_option
@_role_option
@_resume_options
@store_option
@log_level_option()
def reject_review(
    review_id: str,
    reason: str,
    by: str,
    role: str | None,
    resume: bool,
    apps: tuple[str, ...],
    store: str,
    log_level: str,
) -> int:
    """Reject item ID; the run fails (or goes where the gate routes rejections)."""
    setup_logging(log_level)
    return _decide(store, review_id, "reject", resume, apps, by=by, role=role, reason=reason)


@reviews.command("edit")
@click.argument("review_id", metavar="ID")
@click.option(
    "--payload", required=True, type=JSON_VALUE, metavar="JSON", help="The corrected payload (@file.json reads a file)."
)
@_by_option
@_role_option
@click.option("--comment", metavar="TEXT", help="A note recorded with the edit.")
@_resume_options
@store_option
@log_level_option()
def edit_review(
    review_id: str,
    payload: Any,
    by: str,
    role: str | None,
    comment: str | None,
    resume: bool,
    apps: tuple[str, ...],
    store: str,
    log_level: str,
) -> int:
    """Approve item ID with a corrected payload; the run continues with it (changes are recorded)."""
    setup_logging(log_level)
    return _decide(store, review_id, "edit", resume, apps, payload=payload, by=by, role=role, comment=comment)


@reviews.command("stats")
@store_option
@json_option
@log_level_option()
def review_stats(store: str, as_json: bool, log_level: str) -> int:
    """Escalation rate, time to decision and counts over the review items."""
    setup_logging(log_level)

    async def go(client: Client) -> Any:
        return await client.review_stats()

    stats = run_async(with_client(store, go, read_only=True))
    if as_json:
        dump_json(dataclasses.asdict(stats))
        return 0
    out = console()
    out.print(Text("review metrics", style="bold"))
    counts = ", ".join(f"{k} {v}" for k, v in stats.by_status.items()) or "none"
    out.print(f"  items            {stats.items} ({counts})")
    out.print(f"  pending          {stats.pending} ({stats.overdue} overdue)")
    out.print(f"  escalation rate  {stats.escalation_rate:.1%} of {stats.gates} gate(s)")
    timing = stats.time_to_decision
    if timing:
        out.print(
            f"  time to decision mean {_duration(timing['mean'])}, p50 {_duration(timing['p50'])}, "
            f"p95 {_duration(timing['p95'])}, max {_duration(timing['max'])} over {int(timing['count'])} decision(s)"
        )
    else:
        out.print("  time to decision -")
    return 0
