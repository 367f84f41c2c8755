"""Schemas 6 and 7: API tokens (hashed), the append-only audit trail and the dashboard's sessions."""

from __future__ import annotations

ACCESS_MIGRATION: tuple[int, list[str]] = (
    6,
    [
        # Only the SHA-256 of a token is kept; ``token_hash`` is how a request finds it.
        """CREATE TABLE IF NOT EXISTS orchestrate_tokens (
            token_id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            created_at {real} NOT NULL,
            expires_at {real},
            revoked_at {real}
        )""",
        # Append-only: nothing in orchestrate updates or deletes a row (PostgreSQL refuses it).
        """CREATE TABLE IF NOT EXISTS orchestrate_audit (
            id {serial} PRIMARY KEY,
            principal TEXT NOT NULL,
            at {real} NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            payload_hash TEXT,
            outcome INTEGER NOT NULL
        )""",
    ],
)
"""Schema 6's statements, shared by the SQL stores (``{real}``, ``{serial}`` filled in by each)."""

PG_AUDIT_APPEND_ONLY: list[str] = [
    """CREATE OR REPLACE FUNCTION orchestrate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'orchestrate_audit is append-only: % refused', TG_OP;
END $$""",
    "DROP TRIGGER IF EXISTS orchestrate_audit_no_change ON orchestrate_audit",
    "CREATE TRIGGER orchestrate_audit_no_change BEFORE UPDATE OR DELETE ON orchestrate_audit"
    " FOR EACH ROW EXECUTE FUNCTION orchestrate_audit_append_only()",
    "DROP TRIGGER IF EXISTS orchestrate_audit_no_truncate ON orchestrate_audit",
    "CREATE TRIGGER orchestrate_audit_no_truncate BEFORE TRUNCATE ON orchestrate_audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION orchestrate_audit_append_only()",
]
"""PostgreSQL's own statements of schema 6: triggers refusing UPDATE, DELETE and TRUNCATE of the audit."""

SESSIONS_MIGRATION: tuple[int, list[str]] = (
    7,
    [
        # Dashboard sessions, so that a restart signs nobody out and several server
        # processes serve one dashboard. Only the SHA-256 of the cookie is kept; a session
        # refers to the token it was opened with (revoking the token ends it).
        """CREATE TABLE IF NOT EXISTS orchestrate_sessions (
            session_hash TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at {real} NOT NULL,
            expires_at {real} NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS orchestrate_sessions_expiry ON orchestrate_sessions (expires_at)",
    ],
)
"""Schema 7's statements, shared by the SQL stores: the dashboard's sessions."""

SQLITE_AUDIT_APPEND_ONLY: list[str] = [
    "CREATE TRIGGER IF NOT EXISTS orchestrate_audit_no_update BEFORE UPDATE ON orchestrate_audit"
    " BEGIN SELECT RAISE(ABORT, 'orchestrate_audit is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS orchestrate_audit_no_delete BEFORE DELETE ON orchestrate_audit"
    " BEGIN SELECT RAISE(ABORT, 'orchestrate_audit is append-only: DELETE refused'); END",
]
"""SQLite's own statements of schema 7: triggers refusing UPDATE and DELETE of the audit (SQLite has no TRUNCATE)."""

SQLITE_EXTRA_MIGRATIONS: dict[int, list[str]] = {7: SQLITE_AUDIT_APPEND_ONLY}
"""Statements only SQLite runs, after the shared ones of a version."""
