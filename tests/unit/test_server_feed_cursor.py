"""FeedCursor: the ids a live stream passed, the gaps below them, and its SSE id text."""

from __future__ import annotations

import pytest

from orchestrate.errors import InvalidInputError
from orchestrate.store._feed import MAX_GAPS, FeedCursor


def test_passing_an_id_past_missing_ones_records_them_as_gaps_until_found() -> None:
    cursor = FeedCursor(3, {}, 10.0)
    cursor.passed(4, now=100.0)
    cursor.passed(7, now=100.0)
    assert cursor.after == 7
    assert sorted(cursor.gaps) == [5, 6]
    assert cursor.text() == "7~5.6"
    cursor.filled(6)
    assert cursor.text() == "7~5"


def test_gaps_are_given_up_after_the_lag_window() -> None:
    cursor = FeedCursor(0, {}, 10.0)
    cursor.passed(3, now=100.0)
    cursor.expire(now=110.0)
    assert sorted(cursor.gaps) == [1, 2]
    cursor.expire(now=110.5)
    assert cursor.gaps == {}
    assert cursor.text() == "3"


def test_without_a_lag_window_no_gap_is_kept() -> None:
    cursor = FeedCursor(0, {}, 0.0)
    cursor.passed(5, now=1.0)
    assert cursor.gaps == {}
    assert cursor.text() == "5"


def test_a_cursor_keeps_only_the_newest_gaps() -> None:
    cursor = FeedCursor(0, {}, 10.0)
    cursor.passed(10_000, now=1.0)
    assert len(cursor.gaps) == MAX_GAPS
    assert min(cursor.gaps) == 10_000 - MAX_GAPS


def test_the_text_round_trips_and_restarts_the_window() -> None:
    parsed = FeedCursor.parse("12~9.11", lag_seconds=5.0, now=50.0)
    assert parsed is not None
    assert parsed.after == 12
    assert parsed.gaps == {9: 50.0, 11: 50.0}
    assert FeedCursor.parse("12", lag_seconds=0.0, now=1.0) == FeedCursor(12, {}, 0.0)
    # A store without a lag window drops gaps handed back by a client.
    dropped = FeedCursor.parse("12~9", lag_seconds=0.0, now=1.0)
    assert dropped is not None
    assert dropped.gaps == {}
    assert FeedCursor.parse("", lag_seconds=1.0, now=1.0) is None


@pytest.mark.parametrize("text", ["x", "-1", "5~7", "5~0", "5~a", "5~", "1.5"])
def test_a_foreign_id_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(InvalidInputError, match="Last-Event-ID must be an event id from this stream"):
        FeedCursor.parse(text, lag_seconds=1.0, now=1.0)
