"""Turning the OMS's replies into HTTP responses, and request bodies into JSON, for every route."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.sandbox.oms import Reply, error_reply


def json_response(reply: Reply) -> Response:
    if reply.status == 204 or (reply.body is None and 200 <= reply.status < 300):
        return Response(status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def read_body(request: Request) -> tuple[Any, Reply | None]:
    """The request's JSON (None when empty), or the 400 VTEX would give for a body that is not JSON."""
    raw = await request.body()
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, error_reply(400, "SBX-INVALID-BODY", "The request body is not valid JSON")
