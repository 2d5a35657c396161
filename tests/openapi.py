"""VTEX's official OpenAPI files, as validators for the contract tests.

The files are not copied into this store: they are read from VTEX_OPENAPI_DIR, or from
../shared/vtex-openapi beside the checkout. Tests that need them skip with a clear reason when
neither exists.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

FULFILLMENT = "VTEX---Marketplace-Protocol---External-Marketplace-Orders.json"
FULFILLMENT_2023 = "history/43c98d6479dcc495769e9dabb8063d59737e4e3c/" + FULFILLMENT
ORDERS = "VTEX---Orders-API.json"


def openapi_dir() -> Path | None:
    candidates = [
        os.environ.get("VTEX_OPENAPI_DIR"),
        Path(__file__).resolve().parents[1].parent / "shared" / "vtex-openapi",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / ORDERS).is_file():
            return Path(candidate)
    return None


def require_openapi() -> Path:
    found = openapi_dir()
    if found is None:
        pytest.skip(
            "VTEX's OpenAPI files are not here: set VTEX_OPENAPI_DIR or place them in ../shared/vtex-openapi"
        )
    return found


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((require_openapi() / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Operation:
    spec: str
    method: str
    path: str  # as written in the spec, with {params}

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", self.path) + "$")

    def definition(self) -> dict[str, Any]:
        op: dict[str, Any] = load(self.spec)["paths"][self.path][self.method.lower()]
        return op


OPERATIONS = {
    "place-order": Operation(FULFILLMENT, "POST", "/api/fulfillment/pvt/orders"),
    "authorize-dispatch": Operation(FULFILLMENT, "POST", "/api/fulfillment/pvt/orders/{orderId}/fulfill"),
    "get-order": Operation(ORDERS, "GET", "/api/oms/pvt/orders/{orderId}"),
    "start-handling": Operation(ORDERS, "POST", "/api/oms/pvt/orders/{orderId}/start-handling"),
    "send-invoice": Operation(ORDERS, "POST", "/api/oms/pvt/orders/{orderId}/invoice"),
    "send-tracking": Operation(ORDERS, "PATCH", "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}"),
    "cancel-order": Operation(ORDERS, "POST", "/api/oms/pvt/orders/{orderId}/cancel"),
}


def operation_for(method: str, path: str) -> str:
    for name, op in OPERATIONS.items():
        if op.method == method and op.regex.match(path):
            return name
    raise KeyError(f"{method} {path} is not an operation of this flow")


def _validator(spec_name: str, schema: dict[str, Any]) -> Any:
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    spec = load(spec_name)
    registry = Registry().with_resource(
        "vtex-spec.json", Resource.from_contents(spec, default_specification=DRAFT4)
    )
    return OAS30Validator(_rebase(schema), registry=registry)


def _rebase(schema: Any) -> Any:
    """Point the spec's local $refs at the registered document."""
    if isinstance(schema, dict):
        return {
            k: ("vtex-spec.json" + v if k == "$ref" and v.startswith("#") else _rebase(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


def request_errors(operation: str, body: Any) -> list[str]:
    op = OPERATIONS[operation]
    schema = op.definition()["requestBody"]["content"]["application/json"]["schema"]
    validator = _validator(op.spec, schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(body)]


def response_schema(operation: str, status: int) -> dict[str, Any] | None:
    op = OPERATIONS[operation]
    response = op.definition()["responses"].get(str(status))
    if response is None:
        return None
    content = response.get("content", {}).get("application/json", {})
    schema: dict[str, Any] | None = content.get("schema")
    return schema


def response_errors(operation: str, status: int, body: Any) -> list[str]:
    schema = response_schema(operation, status)
    if schema is None:
        return [f"{operation} does not document HTTP {status} with a JSON schema"]
    validator = _validator(OPERATIONS[operation].spec, schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(body)]


def example_2023(path: str, status: str = "200") -> Any:
    """The response example of the 2023 fulfillment spec (it documents examples, not schemas)."""
    op = load(FULFILLMENT_2023)["paths"][path]["post"]
    return op["responses"][status]["content"]["application/json"]["examples"]["response"]["value"]


def shape_errors(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Every key of the example is present with a JSON type compatible with the example's."""
    if expected is None:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {type(actual).__name__}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += shape_errors(value, actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected an array, got {type(actual).__name__}"]
        return (
            [p for item in actual for p in shape_errors(expected[0], item, f"{where}[]")] if expected else []
        )
    if isinstance(expected, bool):
        return [] if isinstance(actual, bool) or actual is None else [f"{where}: expected a boolean"]
    if isinstance(expected, int | float):
        return (
            []
            if (isinstance(actual, int | float) and not isinstance(actual, bool)) or actual is None
            else [f"{where}: expected a number"]
        )
    if isinstance(expected, str):
        return [] if isinstance(actual, str) or actual is None else [f"{where}: expected a string"]
    return []
