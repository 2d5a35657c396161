"""What every benchmark needs: a sandbox process, order files, a fresh database, daemon runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.sandbox.process import client_env


def order_line(n: int, affiliate: str = "BCH", with_invoice: bool = True) -> str:
    mkp = str(5_000_000 + n)
    price, qty, shipping = 1990 + (n % 7) * 100, 1 + n % 3, 990
    value = price * qty + shipping
    body = {
        "marketplaceOrderId": mkp,
        "marketplaceServicesEndpoint": "https://marketplace-services.example.com/vtex",
        "marketplacePaymentValue": value,
        "items": [{"id": str(1 + n % 1000), "quantity": qty, "seller": "1", "price": price}],
        "clientProfileData": {
            "email": f"customer{n}@example.com",
            "firstName": "Cliente",
            "lastName": f"N{n}",
            "documentType": "cpf",
            "document": f"{10_000_000_000 + n}",
        },
        "shippingData": {
            "address": {
                "addressType": "residential",
                "receiverName": f"Cliente N{n}",
                "postalCode": "01310-100",
                "city": "São Paulo",
                "state": "SP",
                "country": "BRA",
                "street": "Avenida Paulista",
                "number": str(n % 2000 + 1),
            },
            "logisticsInfo": [
                {
                    "itemIndex": 0,
                    "selectedSla": "Normal",
                    "lockTTL": "8d",
                    "shippingEstimate": "5d",
                    "price": shipping,
                }
            ],
        },
        "paymentData": None,
    }
    line: dict[str, Any] = {"affiliateId": affiliate, "order": body}
    if with_invoice:
        line["invoice"] = {
            "type": "Output",
            "issuanceDate": "2026-11-27T10:00:00-03:00",
            "invoiceNumber": f"NF{mkp}",
            "invoiceValue": value,
            "items": [{"id": body["items"][0]["id"], "price": price, "quantity": qty}],
        }
    return json.dumps(line)


def write_orders(path: Path, count: int, start: int = 0) -> Path:
    with path.open("w") as out:
        for n in range(start, start + count):
            out.write(order_line(n) + "\n")
    return path


class PeakMemory:
    """A child's own peak resident memory, sampled from /proc/<pid>/status (VmHWM).

    wait4's ru_maxrss is not it: Linux counts the pages the child shared with its parent between
    fork and exec, so a child of a 300 MB benchmark process reports 300 MB even for `python -c
    pass`. VmHWM belongs to the address space the child has after exec. It is a high-water mark,
    so sampling every 50 ms until the process exits misses nothing but its last 50 ms."""

    def __init__(self, pid: int) -> None:
        self._path = Path(f"/proc/{pid}/status")
        self._peak_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                for line in self._path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self._peak_kb = max(self._peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass  # the process is gone or exiting: keep the last value
            self._done.wait(0.05)

    def stop(self) -> float:
        """Peak RSS in MB; call once the process has exited (or right before stopping it)."""
        self._done.set()
        self._thread.join()
        return self._peak_kb / 1024


@dataclass
class DaemonRun:
    wall_seconds: float
    cpu_seconds: float
    max_rss_mb: float
    exit_code: int


def env_for(database_url: str, sandbox_url: str, **settings: str) -> dict[str, str]:
    """As `client_env`, with only warnings logged unless a run asks for more."""
    return client_env(database_url, sandbox_url, **{"ORCHESTRATOR_LOG_LEVEL": "warning", **settings})


def flow_env(database_url: str, sandbox_url: str, args: Any) -> dict[str, str]:
    """The environment of a daemon whose cost is measured: the benchmark's grace period and
    concurrency, info logs as in production, and no request budget of its own to wait on."""
    return env_for(
        database_url,
        sandbox_url,
        ORCHESTRATOR_GRACE_PERIOD=f"{args.grace}s",
        ORCHESTRATOR_CONCURRENCY=str(args.concurrency),
        ORCHESTRATOR_LOG_LEVEL="info",
        VTEX_MAX_RPM="1000000",
    )


def run_command(
    args: list[str], env: dict[str, str], log: Path | None = None, module: str = "orchestrator"
) -> DaemonRun:
    """Run an orchestrator command (or another module's) to completion and measure its own CPU
    and peak memory."""
    out = log.open("a") if log else subprocess.DEVNULL
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=out, stderr=out)
    memory = PeakMemory(process.pid)
    _pid, status, usage = os.wait4(process.pid, 0)
    peak = memory.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if log:
        out.close()  # type: ignore[union-attr]
    return DaemonRun(wall, usage.ru_utime + usage.ru_stime, peak, process.returncode)


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpus} cores ({model}), {mem:.0f} GiB RAM, Python {sys.version.split()[0]}"
