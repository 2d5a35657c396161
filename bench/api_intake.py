"""Intake through the HTTP API while a daemon works the same PostgreSQL database: 10,000 orders
pushed as a POS would (one order per request, several clients at once) and as an ERP would
(batches), in orders per second and the API process's CPU per order. The daemon runs meanwhile
against the sandbox, so the database serves both, as in production."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import env_for, machine, order_line, workdir
from bench.scale_out import _drop, _postgres_database
from orchestrator.sandbox.process import SandboxProcess


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "orchestrator", "serve", "--port", "0"]
    process = subprocess.Popen(
        command, env={**env, "ORCHESTRATOR_LOG_LEVEL": "info"}, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    for line in process.stderr:
        if '"API served"' in line:
            threading_drain(process, log)
            return process, json.loads(line)["url"]
    raise RuntimeError("orchestrator serve did not start")


def threading_drain(process: subprocess.Popen[str], log: Path) -> None:
    import threading

    def drain() -> None:
        with log.open("a") as out:
            for line in process.stderr or []:
                out.write(line)

    threading.Thread(target=drain, daemon=True).start()


async def _push(url: str, token: str, bodies: list[bytes], clients: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            while not queue.empty():
                answer = await http.post("/api/orders", content=queue.get_nowait())
                if answer.status_code != 201:
                    raise RuntimeError(f"intake answered {answer.status_code}: {answer.text[:300]}")

    await asyncio.gather(*(client() for _ in range(clients)))


def _one(args: Namespace, work: Path, sandbox: SandboxProcess, batch: int, start: int) -> dict[str, Any]:
    name, database_url = _postgres_database()
    serve = daemon = None
    try:
        env = env_for(database_url, sandbox.url, ORCHESTRATOR_GRACE_PERIOD="2s", VTEX_MAX_RPM="600000")
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "migrate"], env=env, check=True, capture_output=True
        )
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "token",
                "create",
                "--name",
                "bench",
                "--role",
                "intake",
                "--json",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        token = json.loads(created.stdout)["token"]
        serve, url = _serve(env, work / "serve.log")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lines = [order_line(n) for n in range(start, start + args.orders)]
        bodies = [
            ("[" + ",".join(lines[i : i + batch]) + "]").encode() if batch > 1 else lines[i].encode()
            for i in range(0, len(lines), batch)
        ]
        cpu_before = _cpu_seconds(serve.pid)
        started = time.monotonic()
        asyncio.run(_push(url, token, bodies, args.clients))
        wall = time.monotonic() - started
        cpu = _cpu_seconds(serve.pid) - cpu_before
    finally:
        for process in (serve, daemon):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        _drop(name)
    return {
        "ordersPerRequest": batch,
        "clients": args.clients,
        "orders": args.orders,
        "wallSeconds": round(wall, 1),
        "ordersPerSecond": round(args.orders / wall, 1),
        "apiCpuPerOrderMs": round(cpu / args.orders * 1000, 2),
    }


def run(args: Namespace) -> dict[str, Any]:
    work = workdir("api")
    sandbox = SandboxProcess("--grace-seconds", "2", "--lenient", log=work / "sandbox.log")
    try:
        results = [
            _one(args, work, sandbox, batch, start=n * args.orders) for n, batch in enumerate(args.batches)
        ]
    finally:
        sandbox.stop()
    return {"benchmark": "api-intake", "machine": machine(), "backend": "postgresql", "runs": results}
