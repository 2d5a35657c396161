"""Storage: the migrated schema, claims with leases, fenced writes, SQLite settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from orchestrator.clock import utcnow
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.intake.importer import import_lines
from orchestrator.ops.status import report
from orchestrator.store.events import new_event
from orchestrator.store.migrate import alembic_config, current_revision, head_revision
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests.factories import import_lines as lines_of

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def test_migrated_schema_matches_the_models(store: Store) -> None:
    """Alembic's migration builds exactly the tables, columns and indexes the models declare."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_the_quick_revision_check_agrees_with_alembic(store: Store) -> None:
    """Commands check the schema without importing Alembic; that shortcut must read what Alembic reads."""
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    with store.engine.connect() as conn:
        assert current_revision(store.engine) == MigrationContext.configure(conn).get_current_revision()
    assert current_revision(store.engine) == head_revision()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    """WAL lets status read during a run; the busy timeout makes writers queue instead of failing."""
    store = open_store(sqlite_url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_claim_leases_due_orders_once(store: Store) -> None:
    """A claimed order is not claimed again until its lease expires."""
    start = store.server_now()
    import_lines(lines_of(5), store, start)
    first = store.claim_due("w1", start, LEASE, limit=3)
    second = store.claim_due("w2", start, LEASE, limit=10)
    assert len(first) == 3 and len(second) == 2
    assert not {r.id for r in first} & {r.id for r in second}
    assert store.claim_due("w3", start + timedelta(seconds=30), LEASE, limit=10) == []
    for row in first:
        assert row.lease_owner == "w1" and row.next_run_at == row.lease_expires_at
        assert row.lease_expires_at is not None
        assert start <= row.lease_expires_at - LEASE <= store.server_now()


def test_expired_lease_makes_the_order_due_again(store: Store) -> None:
    """A worker that vanished holds nothing: after the lease expiry the order is claimed by another."""
    start = store.server_now()
    import_lines(lines_of(1), store, start)
    [held] = store.claim_due("dead-worker", start, timedelta(0), limit=1)  # expires at once
    [again] = store.claim_due("w2", store.server_now(), LEASE, limit=1)
    assert again.id == held.id and again.lease_owner == "w2" and again.version == held.version + 1


def test_a_worker_that_lost_its_lease_cannot_commit(store: Store) -> None:
    """Fencing: after another worker re-claimed the order, the old worker's intent and outcome are refused."""
    start = store.server_now()
    import_lines(lines_of(1), store, start)
    [stale] = store.claim_due("w1", start, timedelta(0), limit=1)
    [fresh] = store.claim_due("w2", store.server_now(), LEASE, limit=1)
    stale.intent = "place-order"
    stale.state = "created"
    event = new_event(stale.id, T0, "note", message="from a stale worker")
    assert store.commit([stale], [(stale, [event])], "w1") == ([False], [False])
    fresh.state = "created"
    assert store.commit([], [(fresh, [])], "w2") == ([], [True])
    row = store.find(stale.order_id)
    assert row is not None and row.state == "created" and row.intent is None
    assert "from a stale worker" not in [e["message"] for e in store.events(row.id)]


def test_release_leases_makes_held_orders_due_now(store: Store) -> None:
    """Graceful shutdown gives back every lease of the worker; the orders are due immediately, and
    one whose step was cut short says so in its history (the call it made was abandoned)."""
    import_lines(lines_of(3), store, T0)
    held = store.claim_due("w1", T0, LEASE, limit=3)
    assert store.release_leases("w1", T0 + timedelta(seconds=5), cut_short=[held[0].id]) == 3
    assert len(store.claim_due("w2", T0 + timedelta(seconds=5), LEASE, limit=10)) == 3
    notes = [e for e in store.events(held[0].id) if e["action"] == "shutdown"]
    assert len(notes) == 1 and "abandoned" in notes[0]["message"]
    assert not [e for e in store.events(held[1].id) if e["action"] == "shutdown"]


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ("", "next_run_at"),  # either partial index on next_run_at serves it
        ("account = 'acme-br' AND ", "ix_orders_account_next_run_at"),  # an account's lane claims
    ],
)
def test_claim_uses_the_partial_index_on_next_run_at(
    store: Store, backend: str, where: str, index: str
) -> None:
    """The due-order scan is an index range read, not a table scan."""
    query = f"SELECT id FROM orders WHERE {where}next_run_at <= '2026-01-01' ORDER BY next_run_at LIMIT 10"
    with store.engine.connect() as conn:
        if backend == "sqlite":
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()
        else:  # an empty table would make any plan acceptable; ask for the indexed one's availability
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = conn.exec_driver_sql(f"EXPLAIN {query}").all()
    assert any(index in str(row) and "ix_orders_" in str(row) for row in plan), plan


def test_datetimes_come_back_aware_in_utc(store: Store, backend: str) -> None:
    """SQLite stores naive UTC text, PostgreSQL timestamptz; both hand back aware UTC datetimes."""
    import_lines(lines_of(1), store, T0)
    row = store.find("ABC-100000")
    assert row is not None and row.created_at == T0 and row.created_at.tzinfo is UTC
    with store.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT created_at FROM orders")).scalar()
    assert raw == ("2026-11-27 12:00:00.000000" if backend == "sqlite" else T0)


def test_long_texts_are_cut_to_fit_their_columns(store: Store) -> None:
    """PostgreSQL enforces VARCHAR lengths: a very long VTEX message must not make a save fail."""
    import_lines(lines_of(1), store, T0)
    [row] = store.claim_due("w1", T0, LEASE, limit=1)
    row.wait_reason = "x" * 1000
    row.last_error_code = "C" * 200
    event = new_event(row.id, T0, "call", error_code="E" * 200, action="a" * 100)
    assert store.commit([], [(row, [event])], "w1") == ([], [True])
    saved = store.find(row.order_id)
    assert saved is not None and saved.wait_reason is not None and len(saved.wait_reason) == 300
    assert saved.last_error_code is not None and len(saved.last_error_code) == 64


def test_skip_locked_claims_pass_over_rows_another_worker_is_claiming(store: Store, backend: str) -> None:
    """PostgreSQL: rows locked by another transaction are skipped, not waited for."""
    if backend != "postgresql":
        pytest.skip("SQLite has a single writer: there is never another claim in progress to skip")
    import_lines(lines_of(4), store, T0)
    with store.engine.connect() as other, other.begin():
        locked = (
            other.execute(sa.text("SELECT id FROM orders ORDER BY id LIMIT 2 FOR UPDATE")).scalars().all()
        )
        claimed = store.claim_due("w1", T0, LEASE, limit=10)
        assert {r.id for r in claimed} == {r.id for r in store.all_rows()} - set(locked)


def test_the_budget_bucket_is_one_for_every_daemon(database_url: str) -> None:
    """Two daemons (two engines) drawing tokens as fast as they can get no more than one bucket gives."""
    import threading
    import time

    first = open_store(database_url)
    second = open_store(database_url)
    capacity, rate = 20.0, 10.0
    granted = [0, 0]
    answered = [0, 0]
    stop = time.monotonic() + 2.0

    def draw(index: int, store: Store) -> None:
        while time.monotonic() < stop:
            granted[index] += store.take_budget("acme", 4, capacity, rate).granted
            answered[index] += 1

    threads = [threading.Thread(target=draw, args=(i, r)) for i, r in enumerate((first, second))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert sum(granted) <= capacity + rate * elapsed + 1
    assert answered[0] > 0 and answered[1] > 0  # neither daemon was locked out of the bucket
    if database_url.startswith("postgresql"):
        # Row locks queue in order there, so both get tokens. SQLite's busy handler promises no
        # order: under load one writer may take every refill for two seconds, which is fair
        # enough for a bucket (the total is what VTEX sees), so only the total is checked.
        assert granted[0] > 0 and granted[1] > 0


def test_a_429_throttles_the_account_for_every_daemon_then_one_probe_goes(store: Store) -> None:
    """After throttle_account(5), no daemon is granted a token and each is told to wait ~5 s; once
    the pause is over exactly one daemon gets the probe, and the ramp starts only when it was
    answered: one request a second at first, for every daemon together."""
    other = open_store(store.engine.url.render_as_string(hide_password=False))
    store.take_budget("acme", 1, 20.0, 10.0)
    store.throttle_account("acme", 5)
    paused = store.take_budget("acme", 1, 20.0, 10.0)
    assert paused.granted == 0 and 4.0 < paused.wait <= 5.0 and paused.recovery.strikes == 1
    _move_the_pause_into_the_past(store)
    probe = store.take_budget("acme", 4, 20.0, 10.0)
    assert (probe.granted, probe.probe) == (1, True)
    waiting = other.take_budget("acme", 4, 20.0, 10.0)
    assert (waiting.granted, waiting.probe) == (0, False) and 0 < waiting.wait <= 0.25
    store.probe_done("acme", was_answered=True)
    first = other.take_budget("acme", 4, 20.0, 10.0)
    second = store.take_budget("acme", 4, 20.0, 10.0)
    assert first.granted + second.granted <= 1  # one request a second, whoever asks
    assert store.account_recoveries()["acme"][0].ramp_from is not None


def test_429s_in_a_row_lengthen_the_pause_toward_a_minute(store: Store) -> None:
    """Each 429 to a probe doubles the pause (never below VTEX's Retry-After), up to 60 s; more 429s
    during a pause (requests that were in flight together) are the same throttle."""
    pauses = []
    for _ in range(8):
        store.throttle_account("acme", 2)
        store.throttle_account("acme", 2)  # another of the same burst
        pauses.append(round(store.take_budget("acme", 1, 20.0, 10.0).wait))
        _move_the_pause_into_the_past(store)
        assert store.take_budget("acme", 1, 20.0, 10.0).probe
    assert pauses == [2, 2, 4, 8, 16, 32, 60, 60]


def _move_the_pause_into_the_past(store: Store) -> None:
    from orchestrator.store.tables import ACCOUNTS

    with store.engine.begin() as conn:
        conn.execute(ACCOUNTS.update().values(throttled_until=utcnow() - timedelta(seconds=1)))


def test_counts_and_oldest_per_state(store: Store) -> None:
    """state_counts: how many per state and the oldest state change in each, after the planner's upkeep."""
    import_lines(lines_of(3), store, T0)
    [first, *_] = store.claim_due("w1", T0, LEASE, limit=1)
    first.state, first.state_changed_at, first.lease_owner = "created", T0 + timedelta(minutes=5), None
    store.commit([], [(first, [])], "w1")
    store.optimize()
    counts = {c.state: (c.count, c.oldest_since) for c in store.state_counts()}
    assert counts == {"imported": (2, T0), "created": (1, T0 + timedelta(minutes=5))}


def test_status_queries_read_indexes_not_the_table(store: Store, backend: str) -> None:
    """Every statement `status --stuck` runs is an index read: no full scan of orders, whatever the
    number of orders (a million orders answer in tens of milliseconds; see docs/performance.md)."""
    import_lines(lines_of(3), store, T0)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM orders" in statement:
            statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        rules = StuckRules.parse("", timedelta(minutes=30))
        report(store, T0 + timedelta(days=1), rules, timedelta(minutes=30), limit=100)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    assert len(statements) >= 4
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            if backend == "sqlite":
                plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
                assert "SCAN orders" not in plan, (statement, plan)
            else:  # three rows would make a sequential scan cheapest; ask whether an index can answer
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)]
                assert not any("Seq Scan on orders" in line for line in plan), (statement, plan)
