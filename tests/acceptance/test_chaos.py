"""Chaos: 80 orders (a quarter invoiced in three parts), every fault kind injected at a few
percent, the daemon SIGKILLed 8 times at seeded random moments and restarted, then 12 returns
sent amid 3 more kills; on PostgreSQL the daemon's database connections are also
terminated (`pg_terminate_backend`) every second or two, and the last daemon starts while the
database takes no connections at all. The promise must hold at the end, and the test prints the
counts."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from orchestrator.ops.operations import register_return
from orchestrator.sandbox.process import SandboxProcess, client_env
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests import backends
from tests.factories import import_record, order_id, return_for, split_record
from tests.processes import start_daemon

SEED = 20261127
ORDERS = 80  # 20 of them invoiced in three parts
KILLS = 8


class ConnectionKiller(threading.Thread):
    """Terminates every connection to one PostgreSQL database at seeded random moments."""

    def __init__(self, database: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.killed = 0

    def run(self) -> None:
        admin = sa.create_engine(sa.make_url(backends.SERVER_URL), isolation_level="AUTOCOMMIT")
        query = sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()"
        )
        with admin.connect() as conn:
            while not self.stop.wait(self.rng.uniform(0.5, 2.0)):
                self.killed += conn.execute(query, {"name": self.database}).scalar_one()
        admin.dispose()


def refuse_connections(database: str, refuse: bool) -> None:
    """The database takes no new connection (and its open ones are ended), or takes them again."""
    admin = sa.create_engine(sa.make_url(backends.SERVER_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(not refuse).lower()}'))
        if refuse:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": database},
            )
    admin.dispose()


# A quarter of the orders are invoiced in three parts; the rest in one.
RECORDS = [split_record(n) if n % 4 == 0 else import_record(n) for n in range(ORDERS)]
RETURNS = 12  # single-invoice orders whose SKU 5 comes back once invoiced
RETURN_KILLS = 3  # SIGKILLs while the returns go out


def kill_at_random(env: dict[str, str], log: Path, rng: random.Random) -> None:
    daemon = start_daemon(env, log)
    time.sleep(rng.uniform(0.6, 2.2))  # start-up takes ~0.5 s; kill somewhere in the work
    daemon.send_signal(signal.SIGKILL)
    assert daemon.wait(timeout=10) == -signal.SIGKILL


def register_returns(store: Store, returned: list[str]) -> None:
    """Returns of single-invoice orders invoiced by now, up to RETURNS in all (no daemon runs)."""
    for n, record in enumerate(RECORDS):
        row = store.find(order_id(n))
        if len(returned) >= RETURNS or row is None or row.order_id in returned:
            continue
        if "invoice" in record and row.state == "invoiced":
            sku5 = [i for i in record["invoice"]["items"] if i["id"] == "5"]
            register_return(store, row.order_id, return_for(record["invoice"], f"RT{n}", items=sku5))
            returned.append(row.order_id)


def test_chaos_kills_and_faults_never_duplicate_an_effect(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every order invoiced, a quarter of them in three parts, and the returns sent amid kills:
    zero second Place, invoice number sent twice, over-invoiced or over-returned order; each
    order's invoice numbers in VTEX exactly ours."""
    rng = random.Random(SEED)
    faults = [
        "--seed",
        str(SEED),
        "--latency-ms",
        "5",
        "--jitter-ms",
        "25",
        "--error-before",
        "0.03",
        "--error-after",
        "0.03",
        "--drop-after",
        "0.03",
        "--slow",
        "0.02",
        "--slow-seconds",
        "2",
        "--rate-limit",
        "0.002",  # each 429 costs the account a pause, a probe and a ramp, as VTEX asks
        "--retry-after",
        "1",
    ]
    sandbox = SandboxProcess("--grace-seconds", "1", *faults, log=tmp_path / "sandbox.log")
    try:
        store = open_store(database_url)
        import_lines([json.dumps(record) for record in RECORDS], store, utcnow())
        env = client_env(
            database_url,
            sandbox.url,
            ORCHESTRATOR_GRACE_PERIOD="1s",
            ORCHESTRATOR_TICK="100ms",
            ORCHESTRATOR_FEED_INTERVAL="300ms",
            ORCHESTRATOR_LEASE="3s",
            VTEX_TIMEOUT="1s",
            ORCHESTRATOR_CONCURRENCY="32",
        )
        log = tmp_path / "daemon.log"
        killer = None
        if database_url.startswith("postgresql"):
            killer = ConnectionKiller(sa.make_url(database_url).database or "", SEED)
            killer.start()
        started = time.monotonic()
        for _ in range(KILLS):
            kill_at_random(env, log, rng)
        if killer is not None:
            # The final daemon starts while the database takes no connections at all: it must
            # wait that out (a line each time), not exit, whatever moment the kills fall on.
            refuse_connections(sa.make_url(database_url).database or "", True)
        final = start_daemon(env, log, "--until-done")
        if killer is not None:
            # Until the final daemon has met the refusal (its start-up takes longer on a busy
            # machine than on an idle one), then the database takes connections again.
            waited = time.monotonic() + 30
            while "the database is away; trying again" not in log.read_text() and time.monotonic() < waited:
                time.sleep(0.2)
            refuse_connections(sa.make_url(database_url).database or "", False)
            time.sleep(5)  # the kills go on into the final run too, then let it finish
            killer.stop.set()
            killer.join()
        assert final.wait(timeout=300) == 0, log.read_text()[-3000:]
        if killer is not None:
            assert "the database is away; trying again" in log.read_text()
        # Customers return what they got: the returns go out amid more kills and the same faults.
        returned: list[str] = []
        store = open_store(database_url)  # its pooled connections may be ones the killer ended
        register_returns(store, returned)
        for _ in range(RETURN_KILLS):
            kill_at_random(env, log, rng)
        assert start_daemon(env, log, "--until-done").wait(timeout=120) == 0, log.read_text()[-3000:]
        elapsed = time.monotonic() - started

        ledger = sandbox.ledger()
        summary = ledger["summary"]
        states = {c.state: c.count for c in store.state_counts()}
        report = {
            "orders": ORDERS,
            "sigkills": KILLS + RETURN_KILLS,
            "databaseConnectionsKilled": killer.killed if killer is not None else None,
            "seconds": round(elapsed, 1),
            "states": states,
            "vtexRequests": summary["requests"],
            "faultsInjected": summary["faultsInjected"],
            "ordersWithSecondAcceptedPlace": summary["ordersWithDuplicatePlace"],
            "ordersWithSecondStartHandling": summary["ordersWithDuplicateStartHandling"],
            "ordersInvoicedInParts": sum(1 for r in RECORDS if "invoices" in r),
            "returnsRegistered": len(returned),
            "ordersWithAnInvoiceNumberSentTwice": summary["ordersWithRepeatedInvoiceNumbers"],
            "ordersInvoicedAboveValue": summary["ordersOverInvoiced"],
            "ordersReturnedAboveInvoiced": summary["ordersOverReturned"],
            "duplicatePlacesRejectedByVtex": sum(e["placesRejectedDuplicate"] for e in ledger["orders"]),
            "startHandlingsRefusedByVtex": sum(e["startHandlingRefused"] for e in ledger["orders"]),
        }
        with capsys.disabled():
            print("\nchaos result:", json.dumps(report, indent=2))

        assert states == {"invoiced": ORDERS}
        assert sum(summary["faultsInjected"].values()) > 0
        assert killer is None or killer.killed > 0
        assert "Traceback" not in log.read_text()
        assert report["ordersWithSecondAcceptedPlace"] == 0
        assert report["ordersWithSecondStartHandling"] == 0
        assert report["ordersWithAnInvoiceNumberSentTwice"] == 0
        assert report["ordersInvoicedAboveValue"] == 0 and report["ordersReturnedAboveInvoiced"] == 0
        assert all(e["invoicedTotal"] == e["value"] for e in ledger["orders"])
        assert len(returned) == RETURNS
        for n, record in enumerate(RECORDS):  # each of our invoice numbers in VTEX, once, and no other
            [entry] = [e for e in ledger["orders"] if e["orderId"] == order_id(n)]
            ours = [i["invoiceNumber"] for i in record.get("invoices") or [record["invoice"]]]
            if order_id(n) in returned:
                ours.append(f"RT{n}")
            assert entry["invoiceNumbers"] == ours, entry
            assert entry["returnedTotal"] == (900 if order_id(n) in returned else 0), entry
    finally:
        sandbox.stop()
