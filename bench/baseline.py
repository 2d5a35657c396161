"""The baseline: what a user would write by hand. A plain sequential loop with httpx, one order at a
time: Place, Authorize dispatch, poll Get order every half second until ready-for-handling, Start
handling, Invoice, poll until invoiced. No database, no durability, no concurrency.

Run as its own process (`python -m bench.baseline URL ORDERS.jsonl`) so its CPU is measured alone;
prints what it did as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import httpx

from orchestrator.sandbox.records import SandboxConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("orders")
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    config = SandboxConfig()
    headers = {"X-VTEX-API-AppKey": config.app_key, "X-VTEX-API-AppToken": config.app_token}
    calls: Counter[str] = Counter()
    started = time.monotonic()
    with httpx.Client(base_url=args.url, headers=headers, timeout=20) as client, open(args.orders) as lines:
        records = [json.loads(line) for line in lines if line.strip()]
        for record in records:
            affiliate, body = record["affiliateId"], record["order"]
            order_id = f"{affiliate}-{body['marketplaceOrderId']}"
            client.post(
                "/api/fulfillment/pvt/orders", params={"affiliateId": affiliate}, json=[body]
            ).raise_for_status()
            calls["write"] += 1
            client.post(
                f"/api/fulfillment/pvt/orders/{order_id}/fulfill",
                params={"affiliateId": affiliate},
                json={"marketplaceOrderId": body["marketplaceOrderId"]},
            ).raise_for_status()
            calls["write"] += 1
            while client.get(f"/api/oms/pvt/orders/{order_id}").json()["status"] != "ready-for-handling":
                calls["read"] += 1
                time.sleep(args.poll)
            calls["read"] += 1
            client.post(f"/api/oms/pvt/orders/{order_id}/start-handling").raise_for_status()
            invoice = dict(record["invoice"], invoiceValue=str(record["invoice"]["invoiceValue"]))
            client.post(f"/api/oms/pvt/orders/{order_id}/invoice", json=invoice).raise_for_status()
            calls["write"] += 2
            while client.get(f"/api/oms/pvt/orders/{order_id}").json()["status"] != "invoiced":
                calls["read"] += 1
                time.sleep(args.poll)
            calls["read"] += 1
    print(json.dumps({"orders": len(records), "seconds": time.monotonic() - started, **calls}))


if __name__ == "__main__":
    main()
