"""The sandbox's product catalog: which SKUs exist, how many are in stock, and their price.

VTEX refuses to place an order whose SKU is not in the seller's catalog or not available in
inventory (FMT005). By default the sandbox holds SKU ids "1" to "1000" with unlimited stock;
`--catalog FILE` replaces that with a JSON array (or JSON Lines) of
`{"id": "123", "stock": 10, "price": 1990}` (`stock` null or absent: unlimited; `price` optional).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.intake.line_input import split_lines


@dataclass
class Sku:
    id: str
    stock: int | None  # None: unlimited
    price: int | None
    name: str


class CatalogError(ValueError):
    pass


class Catalog:
    def __init__(self, skus: dict[str, Sku]) -> None:
        self._skus = skus

    @classmethod
    def default(cls, size: int = 1000) -> Catalog:
        return cls({str(i): Sku(str(i), None, None, f"Sandbox product {i}") for i in range(1, size + 1)})

    @classmethod
    def from_file(cls, path: Path) -> Catalog:
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            entries: list[Any] = data if isinstance(data, list) else [data]
        except json.JSONDecodeError:
            entries = []
            for number, line in enumerate(split_lines(text), 1):
                if not line.strip():
                    continue
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise CatalogError(f"{path}:{number}: not JSON ({exc.msg})") from None
        skus: dict[str, Sku] = {}
        for number, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str | int):
                raise CatalogError(f"{path}: entry {number} needs an 'id'")
            stock, price = entry.get("stock"), entry.get("price")
            if stock is not None and (not isinstance(stock, int) or stock < 0):
                raise CatalogError(f"{path}: entry {number}: 'stock' must be a non-negative integer or null")
            if price is not None and not isinstance(price, int):
                raise CatalogError(f"{path}: entry {number}: 'price' must be an integer (cents)")
            sku_id = str(entry["id"])
            skus[sku_id] = Sku(sku_id, stock, price, str(entry.get("name") or f"Sandbox product {sku_id}"))
        return cls(skus)

    def get(self, sku_id: str) -> Sku | None:
        return self._skus.get(sku_id)

    def available(self, sku_id: str, quantity: int) -> bool:
        sku = self._skus.get(sku_id)
        return sku is not None and (sku.stock is None or sku.stock >= quantity)

    def reserve(self, sku_id: str, quantity: int) -> None:
        sku = self._skus[sku_id]
        if sku.stock is not None:
            sku.stock -= quantity
