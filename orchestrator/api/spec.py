"""The OpenAPI document, written from the route table itself so it cannot drift from it."""

from __future__ import annotations

import re
from typing import Any

from orchestrator import __version__

ROLES_FOR = {"push": "intake, operator", "read": "viewer, operator", "operate": "operator", None: "any"}


def openapi(endpoints: list[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", e.path)
        ]
        paths.setdefault(e.path, {})[e.method.lower()] = {
            "summary": e.summary,
            "description": f"Roles: {ROLES_FOR.get(e.permission, 'any')}.",
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "done, or nothing new"},
                "401": {"description": "no valid bearer token"},
                "403": {"description": "the token's role may not do this"},
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "vtex-orchestrator", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
