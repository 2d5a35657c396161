"""Builders for realistic orders, import lines and invoices used across the tests."""

from __future__ import annotations

import json
from typing import Any


def place_body(
    marketplace_order_id: str = "1001",
    *,
    skus: tuple[tuple[str, int, int], ...] = (("5", 1, 900),),
    shipping: int = 200,
    value: int | None = None,
) -> dict[str, Any]:
    """A VTEX place-order body: `skus` are (sku id, quantity, unit price in cents)."""
    items = [{"id": sku, "quantity": qty, "seller": "1", "price": price} for sku, qty, price in skus]
    logistics = [
        {
            "itemIndex": i,
            "selectedSla": "Normal",
            "lockTTL": "8d",
            "shippingEstimate": "5d",
            "price": shipping if i == 0 else 0,
        }
        for i in range(len(items))
    ]
    total = sum(q * p for _s, q, p in skus) + shipping
    return {
        "marketplaceOrderId": marketplace_order_id,
        "marketplaceServicesEndpoint": "https://marketplace-services.example.com/vtex",
        "marketplacePaymentValue": total if value is None else value,
        "items": items,
        "clientProfileData": {
            "email": "ana.silva@example.com",
            "firstName": "Ana",
            "lastName": "Silva",
            "documentType": "cpf",
            "document": "12345678909",
            "phone": "+5511999990000",
        },
        "shippingData": {
            "address": {
                "addressType": "residential",
                "receiverName": "Ana Silva",
                "postalCode": "22250-040",
                "city": "Rio de Janeiro",
                "state": "RJ",
                "country": "BRA",
                "street": "Praia de Botafogo",
                "number": "300",
            },
            "logisticsInfo": logistics,
        },
        "paymentData": None,
    }


def invoice_for(body: dict[str, Any], number: str = "NF1001") -> dict[str, Any]:
    return {
        "type": "Output",
        "issuanceDate": "2026-11-27T10:00:00-03:00",
        "invoiceNumber": number,
        "invoiceValue": body["marketplacePaymentValue"],
        "items": [{"id": i["id"], "price": i["price"], "quantity": i["quantity"]} for i in body["items"]],
    }


def import_record(
    n: int, affiliate: str = "ABC", *, with_invoice: bool = True, **body_kw: Any
) -> dict[str, Any]:
    body = place_body(str(100000 + n), **body_kw)
    record: dict[str, Any] = {"affiliateId": affiliate, "order": body}
    if with_invoice:
        record["invoice"] = invoice_for(body, f"NF{100000 + n}")
    return record


def import_lines(
    count: int, affiliate: str = "ABC", *, start: int = 0, with_invoice: bool = True
) -> list[str]:
    return [
        json.dumps(import_record(n, affiliate, with_invoice=with_invoice))
        for n in range(start, start + count)
    ]


def order_id(n: int, affiliate: str = "ABC") -> str:
    return f"{affiliate}-{100000 + n}"


def split_record(n: int, affiliate: str = "ABC", *, parts: int = 3) -> dict[str, Any]:
    """An order shipped in parts: 1 x SKU 5 at 900 and 2 x SKU 6 at 300, shipping 200 (1700),
    with `parts` Output invoices that add up to it (3: SKU 5; one SKU 6; the other and shipping.
    2: SKU 5; both SKU 6 and shipping)."""
    body = place_body(str(100000 + n), skus=(("5", 1, 900), ("6", 2, 300)))
    sku5 = {"id": "5", "price": 900, "quantity": 1}
    if parts == 3:
        split = [([sku5], 900), ([{"id": "6", "price": 300, "quantity": 1}], 300)]
        split.append(([{"id": "6", "price": 300, "quantity": 1}], 500))
    else:
        split = [([sku5], 900), ([{"id": "6", "price": 300, "quantity": 2}], 800)]
    invoices = [
        {
            "type": "Output",
            "issuanceDate": "2026-11-27T10:00:00-03:00",
            "invoiceNumber": f"NF{100000 + n}-{part}",
            "invoiceValue": value,
            "items": items,
        }
        for part, (items, value) in enumerate(split, 1)
    ]
    return {"affiliateId": affiliate, "order": body, "invoices": invoices}


def return_for(
    invoice: dict[str, Any], number: str, *, items: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An Input invoice (a return) of `items` (default: all of `invoice`'s), valued at their prices."""
    back = items if items is not None else invoice["items"]
    return {
        "type": "Input",
        "issuanceDate": "2026-12-01T10:00:00-03:00",
        "invoiceNumber": number,
        "invoiceValue": sum(i["price"] * i["quantity"] for i in back),
        "items": back,
    }
