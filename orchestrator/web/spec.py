"""The OpenAPI document, written from the endpoint table and the body types themselves
(`orchestrator.web.schemas`), so it cannot drift from what the routes do: every answer an
endpoint declares, with its body's schema, and what it takes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from orchestrator import __version__
from orchestrator.web.http import Endpoint
from orchestrator.web.schemas import ErrorBody

ROLES_FOR = {"push": "intake, operator", "read": "viewer, operator", "operate": "operator", None: "any"}
REF = "#/components/schemas/{model}"
# Every authenticated route may answer these, whatever it does.
COMMON = {
    "401": ("no valid bearer token", ErrorBody),
    "403": ("the token's role may not do this", ErrorBody),
    "503": ("the database cannot be used now; try again (Retry-After)", ErrorBody),
}


class Schemas:
    """The document's `components.schemas`, filled as bodies are referred to."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, body: Any) -> dict[str, Any]:
        """A schema for `body` (a TypedDict, or a union or list of them): a reference when it is
        named, the schema itself when not."""
        schema = TypeAdapter(body).json_schema(ref_template=REF, mode="serialization")
        self.components.update(schema.pop("$defs", {}))
        name = getattr(body, "__name__", None)
        if name is None or not hasattr(body, "__annotations__"):
            return schema
        self.components[name] = schema
        return {"$ref": REF.format(model=name)}


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": said}
        for name, said in endpoint.query.items()
    ]
    return params


def _operation(endpoint: Endpoint, schemas: Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for answer in endpoint.answers:
        entry: dict[str, Any] = {"description": answer.description}
        if answer.body is not None:
            entry["content"] = {"application/json": {"schema": schemas.of(answer.body)}}
        responses[str(answer.status)] = entry
    for status, (said, body) in COMMON.items():
        responses.setdefault(
            status, {"description": said, "content": {"application/json": {"schema": schemas.of(body)}}}
        )
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "description": f"Roles: {ROLES_FOR.get(endpoint.permission, 'any')}.",
        "parameters": _parameters(endpoint),
        "security": [{"bearer": []}],
        "responses": responses,
    }
    if endpoint.takes is not None:
        schema = schemas.of(endpoint.takes)
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {media: {"schema": schema} for media in endpoint.takes_media},
        }
    return operation


def openapi(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "vtex-orchestrator", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(schemas.components.items())),
        },
        "paths": paths,
    }
