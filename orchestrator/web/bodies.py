"""Reading what a client posts: a size limit enforced while reading, and orders given as one JSON
object, a JSON array of them, or JSON Lines, turned into the import's lines (so the API validates
exactly as `orchestrator import` does, and its problems carry an index instead of a line)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from orchestrator.errors import UsageError
from orchestrator.intake.line_input import split_lines
from orchestrator.intake.strict_json import BadJson, load_json
from orchestrator.web.schemas import Problem

MAX_BODY_BYTES = 16 * 1024 * 1024  # about 5,000 typical orders per request


class BodyError(UsageError):
    """A posted body that cannot be taken: 400 malformed, 413 too large, 422 invalid (with each
    problem), 409 in conflict with what is stored."""

    def __init__(self, status: int, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.serve_status = status
        self.problems = problems

    def details(self) -> dict[str, Any]:
        return {"problems": self.problems} if self.problems is not None else {}


def invalid(problems: list[tuple[str, str]]) -> BodyError:
    """A 422 listing each (field, message) problem of one posted object."""
    return BodyError(422, "invalid", [Problem(field=f, message=m) for f, m in problems])


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"the body is larger than {limit} bytes; send fewer orders per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"the body is larger than {limit} bytes; send fewer orders per request")
        chunks.append(chunk)
    return b"".join(chunks)


def json_body(raw: bytes) -> Any:
    try:
        return load_json(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise BodyError(400, "the body is not UTF-8 text") from None
    except BadJson as exc:
        raise BodyError(400, f"malformed JSON: {exc}") from None


def order_lines(raw: bytes, content_type: str) -> list[str]:
    """One import line per order: an array's elements, JSON Lines' lines, or the one object."""
    if "ndjson" in content_type or "jsonl" in content_type or "json-seq" in content_type:
        try:
            return split_lines(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise BodyError(400, "the body is not UTF-8 text") from None
    value = json_body(raw)
    if isinstance(value, list):
        return [json.dumps(item) for item in value]
    if isinstance(value, dict):
        return [json.dumps(value)]
    raise BodyError(422, "the body must be an order record, an array of them, or JSON Lines")
