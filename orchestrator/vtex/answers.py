"""Is this VTEX's answer? The shape each call's success has in VTEX's OpenAPI files.

A 2xx alone proves nothing: a proxy, a WAF, a storefront or CDN URL set by mistake, or a login
page answers 200 too. Counting such a page as success walked orders to `handling` that VTEX never
had, and counting it as "no such order" failed them. So a success must look like VTEX's:

    place-order         a JSON array of created orders, or the object {orderId, ...}, naming an
                        orderId (and it must be the one derived from affiliate and marketplace id)
    authorize-dispatch  204 without a body, or a JSON object naming the order (200 or 201)
    get-order           a JSON object whose orderId is the order asked for, with a status (a
                        string, or null: VTEX's status of an incomplete order)
    start-handling      204 without a body (VTEX: retry "if the response differs from the 204 code")
    send-invoice, send-tracking, cancel-order
                        a JSON object with VTEX's receipt fields (receipt, orderId, date)

and "no such order" is only a 404 whose body is VTEX's (empty or JSON), never an HTML page.
Anything else is a `NotVtexRead` or `NotVtexWrite` that records the Content-Type and the start of
the body, so the operator sees what answered instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.vtex.errors import NotVtexRead, NotVtexWrite, OrderIdMismatch, VtexError

MAX_BODY_BYTES = 4 * 1024 * 1024  # VTEX's largest answer here (Get order) is tens of kilobytes


class BodyTooLarge(OrchestratorError):
    """The answer's body went past MAX_BODY_BYTES: no answer of VTEX's is that large (and a body
    without end must not fill the memory)."""


_SHOWN = 200  # characters of an unexpected body kept in the error


class Answer:
    """One response's parts, as the checks need them."""

    def __init__(self, status: int, content_type: str, content: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.content = content
        self.json: Any = None
        self.parsed = False
        if content.strip():
            try:
                self.json = json.loads(content)
                self.parsed = True
            except ValueError:
                pass

    @property
    def empty(self) -> bool:
        return not self.content.strip()


def unexpected(
    operation: str, order_id: str | None, answer: Answer, *, is_write: bool, why: str
) -> VtexError:
    start = answer.content[:_SHOWN].decode("utf-8", "replace").replace("\n", " ").strip()
    shown = f"body starts {start!r}" if start else "empty body"
    message = (
        f"unexpected answer ({why}): HTTP {answer.status}, Content-Type "
        f"{answer.content_type or 'none'}, {shown}; is VTEX_BASE_URL VTEX's API host?"
    )
    kind = NotVtexWrite if is_write else NotVtexRead
    return kind(message, operation=operation, order_id=order_id, http_status=answer.status, code="NOT-VTEX")


def _object_with(*keys: str) -> Callable[[Answer, str | None], str | None]:
    def check(answer: Answer, _order_id: str | None) -> str | None:
        if not isinstance(answer.json, Mapping):
            return "not a JSON object"
        if not any(key in answer.json for key in keys):
            return f"a JSON object without {' or '.join(keys)}"
        return None

    return check


def _no_body(answer: Answer, _order_id: str | None) -> str | None:
    return None if answer.empty else "a body where VTEX sends none"


def _handling_started(answer: Answer, order_id: str | None) -> str | None:
    # VTEX: "The store must validate this response to retry the call if it differs from 204."
    return (
        _no_body(answer, order_id) if answer.status == 204 else f"HTTP {answer.status} where VTEX answers 204"
    )


def _authorized(answer: Answer, order_id: str | None) -> str | None:
    if answer.status == 204:
        return _no_body(answer, order_id)
    return _object_with("marketplaceOrderId", "orderId", "status")(answer, order_id)


def _the_order(answer: Answer, order_id: str | None) -> str | None:
    body = answer.json
    if not isinstance(body, Mapping):
        return "not a JSON object"
    if body.get("orderId") != order_id or "status" not in body:
        return "not the order asked for"
    status = body["status"]
    if status is not None and not isinstance(status, str):
        return "not the order asked for"
    return None


def _items(answer: Answer, _order_id: str | None) -> str | None:
    """The feed's items: a JSON array of objects naming an eventId, a handle, an orderId and the
    state the order reached."""
    body = answer.json
    if not isinstance(body, list):
        return "not a JSON array of feed items"
    for item in body:
        if not isinstance(item, Mapping) or not all(
            isinstance(item.get(k), str) for k in ("eventId", "handle", "orderId", "state")
        ):
            return "a feed item without eventId, handle, orderId or state"
    return None


def placed_order_id(body: Any) -> str | None:
    """The orderId in Place's answer, in either documented form."""
    if isinstance(body, list):
        first = body[0] if body and isinstance(body[0], Mapping) else {}
        found = first.get("orderId")
    elif isinstance(body, Mapping):
        data = body.get("orderData")
        found = body.get("orderId") or (data.get("orderId") if isinstance(data, Mapping) else None)
    else:
        return None
    return found if isinstance(found, str) and found else None


def _placed(answer: Answer, _order_id: str | None) -> str | None:
    if placed_order_id(answer.json) is None:
        return "neither an array of created orders nor an object naming the orderId"
    return None


_CHECKS: dict[str, Callable[[Answer, str | None], str | None]] = {
    "place-order": _placed,
    "authorize-dispatch": _authorized,
    "get-order": _the_order,
    "start-handling": _handling_started,
    "send-invoice": _object_with("receipt", "orderId", "date"),
    "send-tracking": _object_with("receipt", "orderId", "date"),
    "cancel-order": _object_with("receipt", "orderId", "date"),
    "feed-config": _object_with("filter", "queue"),
    "feed-read": _items,
}


def check_success(operation: str, order_id: str | None, answer: Answer, *, is_write: bool) -> None:
    """Raise unless `answer` (a 2xx) is what VTEX answers to `operation`."""
    check = _CHECKS.get(operation)
    why = check(answer, order_id) if check is not None else None
    if why is not None:
        raise unexpected(operation, order_id, answer, is_write=is_write, why=why)
    if operation == "place-order":
        placed = placed_order_id(answer.json)
        if placed is not None and order_id is not None and placed != order_id:
            raise OrderIdMismatch(
                f"VTEX created the order as {placed}, not {order_id} (affiliateId-marketplaceOrderId); "
                f"look it up in VTEX Admin before anything else",
                operation=operation,
                order_id=order_id,
                http_status=answer.status,
                code="ORDER-ID-MISMATCH",
            )


def is_vtex_not_found(answer: Answer) -> bool:
    """A 404 VTEX sent (empty, or JSON such as its error envelope), not some server's 404 page."""
    return answer.status == 404 and (answer.empty or answer.parsed)
