"""The process's redactor: every ``Secret`` value and common credential formats, in text, data and logs."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from orchestrate import _redact
from orchestrate.errors import redact_text
from orchestrate.models import Secret
from orchestrate.observe import configure_logging, get_logger
from orchestrate.store.base import RunRecord
from orchestrate.types import RunStatus


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        pytest.param(
            "invalid key sk-proj-Ab3dEf6hIj9kLm2nOp5q",
            "sk-proj-Ab3dEf6hIj9kLm2nOp5q",
            "invalid key [REDACTED]",
            id="openai",
        ),
        pytest.param(
            "key sk-ant-api03-Zx8yW7vU6tS5rQ4pO3nM2l",
            "sk-ant-api03-Zx8yW7vU6tS5rQ4pO3nM2l",
            "key [REDACTED]",
            id="anthropic",
        ),
        pytest.param("charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc", None, id="stripe"),
        pytest.param("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE", "aws [REDACTED] denied", id="aws"),
        pytest.param(
            "clone with ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "16C7e42F292c6912E7710c838347Ae178B4a",
            None,
            id="github-classic",
        ),
        pytest.param(
            "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "11ABCDEFG0123456789_abcdefghij",
            None,
            id="github-fine-grained",
        ),
        pytest.param("slack xoxb-1234567890-0987654321-AbCdEfGhIjKl", "1234567890-0987654321", None, id="slack-bot"),
        pytest.param("slack xoxp-1234567890-0987654321-AbCdEfGhIjKl", "AbCdEfGhIjKl", None, id="slack-user"),
        pytest.param("slack xoxa-2-1234567890-AbCdEfGhIjKl", "1234567890-AbCdEfGhIjKl", None, id="slack-app"),
        pytest.param(
            "Authorization: Bearer abc.DEF_123-456~789",
            "abc.DEF_123-456~789",
            "Authorization: Bearer [REDACTED]",
            id="authorization-bearer",
        ),
        pytest.param(
            "sent bearer Zm9vYmFyYmF6cXV4",
            "Zm9vYmFyYmF6cXV4",
            "sent bearer [REDACTED]",
            id="bearer",
        ),
        pytest.param(
            "proxy-authorization=Basic dXNlcjpwYXNzd29yZA==",
            "dXNlcjpwYXNzd29yZA==",
            "proxy-authorization=Basic [REDACTED]",
            id="authorization-basic",
        ),
        pytest.param("GET /v1?api_key=a1b2c3d4&page=2", "a1b2c3d4", "GET /v1?api_key=[REDACTED]&page=2", id="api_key="),
        pytest.param("x-api-key: k-98765432", "k-98765432", "x-api-key: [REDACTED]", id="api-key-header"),
        pytest.param('{"token": "tok_998877"}', "tok_998877", '{"token": "[REDACTED]"}', id="token-json"),
        pytest.param("refresh_token=r3fr3sh!", "r3fr3sh!", "refresh_token=[REDACTED]", id="refresh_token="),
        pytest.param("password=hunter22", "hunter22", "password=[REDACTED]", id="password="),
        pytest.param("DB_PASSWORD: 'c0rrect-h0rse'", "c0rrect-h0rse", "DB_PASSWORD: '[REDACTED]'", id="password:"),
        pytest.param("client_secret = s3cr3tvalue", "s3cr3tvalue", "client_secret = [REDACTED]", id="secret="),
        pytest.param(
            "could not connect to postgresql://app:pa55w0rd@db.internal:5432/orch",
            "pa55w0rd",
            "could not connect to postgresql://app:[REDACTED]@db.internal:5432/orch",
            id="url-password",
        ),
        pytest.param(
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
            "dozjgNryP4J3jVmNHl0w5N",
            "jwt [REDACTED] ok",
            id="jwt",
        ),
        pytest.param(
            "google AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "SyDaGmWKa4JsXZ", "google [REDACTED]", id="google"
        ),
        pytest.param(
            "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY----- loaded",
            "MIIEowIBAAKCAQEA",
            "key: [REDACTED] loaded",
            id="pem",
        ),
    ],
)
def test_each_credential_format_is_masked(text: str, secret: str, expected: str | None) -> None:
    masked = redact_text(text)

    assert secret not in masked and "[REDACTED]" in masked
    if expected is not None:
        assert masked == expected


@pytest.mark.parametrize(
    "text",
    [
        "the task-abcdefghijklmnopqrs is done; work-abcdefghijklmnopqrstuv too",
        '{"tokens_in": 1200, "tokens_out": 35, "max_tokens": 4096}',
        "GET http://127.0.0.1:8080/v1/chat/completions",
        "KeyError: 'order_id' in step_key lookup",
        "fault-model: HTTP 400: maximum context length is 8192 tokens",
        "a short one",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_every_secret_value_is_masked_with_its_name_from_creation() -> None:
    value = "live-key-4f1c-9e2a-77b0"  # no known format: only the registry knows it
    assert redact_text(f"echo {value}") == f"echo {value}"

    Secret(value, name="crm_api_key")

    assert redact_text(f"denied for {value}.") == "denied for [REDACTED:crm_api_key]."
    assert redact_text(f'{{"detail": "{value}"}}') == '{"detail": "[REDACTED:crm_api_key]"}'


def test_a_secret_is_masked_whole_where_a_format_would_stop_early() -> None:
    Secret("pw with spaces!7", name="db_password")

    assert redact_text("password=pw with spaces!7 rejected") == "password=[REDACTED:db_password] rejected"
    assert redact_text("Bearer pw with spaces!7") == "Bearer [REDACTED:db_password]"


def test_short_secret_values_are_not_matched_by_value() -> None:
    Secret("red", name="colour")
    Secret("ab12cd3", name="pin")

    assert redact_text("red roses, ab12cd3") == "red roses, ab12cd3"


def test_the_regex_of_known_values_is_rebuilt_only_when_a_new_value_is_registered() -> None:
    Secret("first-value-0a9b8c7d", name="one")
    built = _redact._known.now()
    assert redact_text("second-value-1b2c3d4e") == "second-value-1b2c3d4e"  # answered, and remembered
    assert _redact._known.now() is built  # reused while nothing new is registered

    Secret("first-value-0a9b8c7d", name="same value again")
    assert _redact._known.now() is built

    Secret("second-value-1b2c3d4e", name="two")
    rebuilt = _redact._known.now()
    assert rebuilt is not built
    assert redact_text("first-value-0a9b8c7d second-value-1b2c3d4e") == "[REDACTED:one] [REDACTED:two]"


def test_the_longest_known_value_wins_when_one_contains_another() -> None:
    Secret("prefix-9z8y7x6w", name="short")
    Secret("prefix-9z8y7x6w-and-more", name="long")

    assert redact_text("prefix-9z8y7x6w-and-more") == "[REDACTED:long]"


def test_data_is_masked_at_any_depth_and_by_key_name() -> None:
    data = {
        "error": {"message": "401: Bearer Zm9vYmFyYmF6cXV4", "cause": ["api_key=a1b2c3d4"]},
        "headers": ({"Authorization": "Basic dXNlcjpwYXNz"},),
        "access_token": "opaque",
        "password": "x",
        "tokens_in": 12,
        "status": RunStatus.DEAD,
    }

    masked = _redact.redact_data(data)

    assert masked == {
        "error": {"message": "401: Bearer [REDACTED]", "cause": ["api_key=[REDACTED]"]},
        "headers": ({"Authorization": "[REDACTED]"},),
        "access_token": "[REDACTED]",
        "password": "[REDACTED]",
        "tokens_in": 12,
        "status": RunStatus.DEAD,
    }
    assert masked["status"] is RunStatus.DEAD
    assert data["error"]["message"] == "401: Bearer Zm9vYmFyYmF6cXV4"  # the input is not changed


def test_records_are_copied_only_when_they_hold_a_secret() -> None:
    clean = RunRecord(
        run_id="r1", workflow="wf", version="1", status=RunStatus.DEAD, error={"message": "card declined"}
    )
    leaky = dataclasses.replace(clean, error={"message": "401 sk-proj-Ab3dEf6hIj9kLm2nOp5q"})

    assert _redact.redact_data(clean) is clean
    masked = _redact.redact_data(leaky)
    assert masked is not leaky and masked.error == {"message": "401 [REDACTED]"}
    assert masked.status is RunStatus.DEAD and masked.run_id == "r1"
    assert leaky.error == {"message": "401 sk-proj-Ab3dEf6hIj9kLm2nOp5q"}


# logs -------------------------------------------------------------------------------------------


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    yield stream
    configure_logging("warning")


def test_every_log_record_is_masked_in_nested_fields(log_stream: io.StringIO) -> None:
    key = Secret("log-secret-5e6f7a8b9c", name="vendor_key")
    log = get_logger()

    log.debug(
        "call_failed",
        error=f"401: echo {key.reveal()}",
        request={"headers": {"authorization": "Bearer Zm9vYmFyYmF6cXV4"}, "urls": ["https://u:pa55w0rd@h/x"]},
        attempt=1,
    )

    text = log_stream.getvalue()
    assert "log-secret-5e6f7a8b9c" not in text and "Zm9vYmFyYmF6cXV4" not in text and "pa55w0rd" not in text
    (line,) = [json.loads(row) for row in text.splitlines()]
    assert line["error"] == "401: echo [REDACTED:vendor_key]"
    assert line["request"]["headers"]["authorization"] == "[REDACTED]"
    assert line["attempt"] == 1 and line["level"] == "debug"


def test_an_object_in_a_log_record_is_printed_masked(log_stream: io.StringIO) -> None:
    class Config:
        def __repr__(self) -> str:
            return "Config(api_key='a1b2c3d4e5')"

    get_logger().info("loaded", config=Config())

    assert json.loads(log_stream.getvalue())["config"] == "Config(api_key='[REDACTED]')"


def test_a_traceback_asked_for_with_exc_info_is_masked(log_stream: io.StringIO) -> None:
    try:
        raise PermissionError("denied for token=t0k3n-5ecr3t")
    except PermissionError:
        get_logger().error("failed", exc_info=True)

    line = json.loads(log_stream.getvalue())
    assert "t0k3n-5ecr3t" not in log_stream.getvalue()
    assert "PermissionError: denied for token=[REDACTED]" in line["exception"]


def test_a_record_below_the_level_is_not_even_looked_at() -> None:
    looked = []

    class Watched:
        def __repr__(self) -> str:
            looked.append(1)
            return "Watched()"

    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    try:
        get_logger().debug("noise", value=Watched())
        get_logger().info("noise", value=Watched())
        assert looked == [] and stream.getvalue() == ""
        get_logger().warning("signal", value=Watched())
    finally:
        configure_logging("warning")
    assert looked == [1]  # read once, for the record that is written


def test_a_registered_key_that_starts_a_longer_one_leaves_nothing_of_it() -> None:
    from orchestrate._redact import redact, register

    register("sk-prefix-0123456789abcdef", "short_key")
    masked = redact("401: invalid api_key sk-prefix-0123456789abcdefghij and sk-prefix-0123456789abcdef.")
    assert "ghij" not in masked and "0123456789" not in masked
    assert masked.endswith("[REDACTED:short_key].") or masked.endswith("[REDACTED:short_key]")
