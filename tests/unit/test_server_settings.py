"""Server settings, roles and tokens: pure rules, no HTTP."""

from __future__ import annotations

import pytest

from orchestrate.errors import InvalidInputError
from orchestrate.server._auth import LOCAL, AuthError, Principal, Sessions, authenticate, create_token
from orchestrate.server._reviews import decision_role
from orchestrate.server.settings import ServerSettings, is_loopback
from orchestrate.store._access import MemoryAccessStore, token_hash
from orchestrate.store.base import ReviewRecord


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("[::1]:8000", True),
        ("LOCALHOST:1", True),
        ("evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_only_the_allowed_hosts_are_served(header: str, allowed: bool) -> None:
    assert ServerSettings().host_allowed(header) is allowed
    assert ServerSettings(allowed_hosts=["*"]).host_allowed(header)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_body_bytes": 0}, {"page_limit": True}, {"poll_seconds": 0}, {"stream_seconds": -1}, {"allowed_hosts": []}],
)
def test_bad_settings_are_refused_naming_the_setting(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(kwargs)).split("_")[0]):
        ServerSettings(**kwargs)  # type: ignore[arg-type]


def test_ranks_and_reviewer_roles() -> None:
    reviewer = Principal("eve", ("editor",))
    assert reviewer.at_least("viewer") and not reviewer.at_least("operator")
    assert reviewer.reviewer_roles == ("editor",)
    assert Principal("ada", ("admin",)).at_least("operator")
    assert not Principal("nobody", ()).at_least("viewer")


def _item(**fields: object) -> ReviewRecord:
    return ReviewRecord(review_id="rv-1", run_id="r", workflow="w", step_key="s", gate_key="review:s", **fields)  # type: ignore[arg-type]


def test_the_decision_role_is_a_role_the_item_still_needs() -> None:
    item = _item(required_roles=["medical", "qa"], approvals=[{"by": "x", "role": "medical"}])
    assert decision_role(item, Principal("p", ("medical", "qa"))) == "qa"
    assert decision_role(item, LOCAL) == "qa"
    with pytest.raises(AuthError) as refused:
        decision_role(item, Principal("ada", ("admin",)))
    assert refused.value.status == 403
    open_item = _item()
    assert decision_role(open_item, Principal("op", ("operator",))) is None
    with pytest.raises(AuthError):
        decision_role(open_item, Principal("v", ("viewer",)))


async def test_tokens_are_stored_hashed_and_checked_for_expiry_and_revocation() -> None:
    access = MemoryAccessStore()
    token, record = await create_token(access, name="eve", roles=["editor"], expires_in=60, now=1000.0)
    assert record.token_hash == token_hash(token) and token not in repr(record)
    sessions = Sessions(access, 3600)
    found = await authenticate(
        access, sessions, method="GET", authorization=f"Bearer {token}", cookie=None, csrf=None, now=1030.0
    )
    assert (found.name, found.roles) == ("eve", ("editor",))
    with pytest.raises(AuthError, match="expired"):
        await authenticate(
            access, sessions, method="GET", authorization=f"Bearer {token}", cookie=None, csrf=None, now=1060.0
        )
    await access.revoke_token(record.token_id, now=1040.0)
    with pytest.raises(AuthError, match="revoked"):
        await authenticate(
            access, sessions, method="GET", authorization=f"Bearer {token}", cookie=None, csrf=None, now=1041.0
        )
    with pytest.raises(InvalidInputError, match="at least one role"):
        await create_token(access, name="x", roles=[])
    with pytest.raises(InvalidInputError, match="invalid role"):
        await create_token(access, name="x", roles=["a b"])
