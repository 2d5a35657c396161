"""The sandbox's control API, under the reserved `/_sandbox/` prefix (never a VTEX path).

What a test or a rehearsing user uses to look at VTEX's side and to steer it: the ledger of
effects and every request, resetting, faults and holds, putting an order in any VTEX status and
keeping it there, settling a cancellation request, and choosing which of VTEX's documented answers
the sandbox gives (`behaviour`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.sandbox.faults import FaultConfig, Hold
from orchestrator.sandbox.feed import FeedFaults
from orchestrator.sandbox.hook import HookFaults
from orchestrator.sandbox.oms import CANCEL_MODES
from orchestrator.sandbox.responses import json_response as _json_response
from orchestrator.sandbox.responses import read_body as _body

if TYPE_CHECKING:
    from orchestrator.sandbox.app import Sandbox

_BEHAVIOUR = (
    "grace_seconds",
    "invoice_delay_seconds",
    "place_answer",
    "authorize_status",
    "cancel_mode",
    "cancel_delay_seconds",
    "tracking_refusal",
    "fulfill_unknown_seconds",
    "manual_authorization",
    "invoice_refusals",
    "null_status_reads",
    "forbidden",
    "price_divergence",
)
_CHOICES: dict[str, tuple[Any, ...]] = {
    "place_answer": ("array", "object"),
    "authorize_status": (200, 201, 204),
    "cancel_mode": CANCEL_MODES,
}


def _apply_behaviour(config: Any, payload: dict[str, Any]) -> str | None:
    for name, value in payload.items():
        if name not in _BEHAVIOUR:
            return f"unknown setting {name!r} (known: {', '.join(_BEHAVIOUR)})"
        if name in _CHOICES and value not in _CHOICES[name]:
            return f"{name} must be one of {_CHOICES[name]}"
    forbidden = payload.get("forbidden", ())
    if not isinstance(forbidden, list | tuple) or not all(isinstance(op, str) for op in forbidden):
        return "forbidden must be a list of operation names (e.g. send-invoice)"
    for name, value in payload.items():
        setattr(config, name, tuple(value) if name == "forbidden" else value)
    return None


def control_routes(sandbox: Sandbox) -> list[Route]:
    return (
        _looking_routes(sandbox)
        + _order_routes(sandbox)
        + _fault_routes(sandbox)
        + _feed_routes(sandbox)
        + _hook_routes(sandbox)
    )


def _feed_routes(sandbox: Sandbox) -> list[Route]:
    """The Orders Feed's queue as VTEX keeps it, and its documented liberties on demand."""
    oms = sandbox.oms

    async def feed(_request: Request) -> Response:
        state = oms.feed
        return JSONResponse(
            {
                "config": state.view(),
                "waiting": len(state.items),
                "delivered": state.delivered,
                "committed": state.committed,
                "dropped": state.dropped,
            }
        )

    async def feed_faults(request: Request) -> Response:
        """{"shuffle": bool, "duplicate": probability, "seed": int}"""
        payload, bad = await _body(request)
        if bad or not isinstance(payload, dict):
            return JSONResponse({"error": "expected {shuffle, duplicate, seed}"}, status_code=400)
        try:
            oms.feed.set_faults(FeedFaults(**payload))
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(payload)

    async def forget(_request: Request) -> Response:
        """VTEX deleted the feed's configuration (as it does after a retention period without events)."""
        return JSONResponse({"deleted": oms.feed.delete()})

    return [
        Route("/_sandbox/feed", feed),
        Route("/_sandbox/feed/faults", feed_faults, methods=["POST"]),
        Route("/_sandbox/feed/forget", forget, methods=["POST"]),
    ]


def _hook_routes(sandbox: Sandbox) -> list[Route]:
    """The Orders Hook as VTEX keeps it: its configuration, what waits to be pushed, what was."""
    oms = sandbox.oms

    async def hook(_request: Request) -> Response:
        return JSONResponse(oms.hook.counts())

    async def hook_faults(request: Request) -> Response:
        """{"lose": probability}: deliveries that fail without being sent (VTEX retries them)."""
        payload, bad = await _body(request)
        if bad or not isinstance(payload, dict):
            return JSONResponse({"error": "expected {lose}"}, status_code=400)
        try:
            oms.hook.faults = HookFaults(**payload)
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(payload)

    async def forget(_request: Request) -> Response:
        """VTEX deleted the hook's configuration (as it does after 3 days without notifications)."""
        return JSONResponse({"deleted": oms.hook.delete()})

    return [
        Route("/_sandbox/hook", hook),
        Route("/_sandbox/hook/faults", hook_faults, methods=["POST"]),
        Route("/_sandbox/hook/forget", forget, methods=["POST"]),
    ]


def _looking_routes(sandbox: Sandbox) -> list[Route]:
    """What VTEX's side holds: the ledger of effects and every request."""
    oms = sandbox.oms

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "orders": len(oms.orders)})

    async def ledger(_request: Request) -> Response:
        return JSONResponse(oms.ledger.as_dict())

    async def requests(_request: Request) -> Response:
        return JSONResponse(list(oms.ledger.request_log))

    async def ledger_order(request: Request) -> Response:
        entry = oms.ledger.get(request.path_params["order_id"])
        if entry is None:
            return JSONResponse({"error": "unknown order"}, status_code=404)
        return JSONResponse(entry.as_dict())

    async def reset(_request: Request) -> Response:
        oms.reset()
        return JSONResponse({"ok": True})

    return [
        Route("/_sandbox/health", health),
        Route("/_sandbox/ledger", ledger),
        Route("/_sandbox/requests", requests),
        Route("/_sandbox/ledger/{order_id}", ledger_order),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]


def _order_routes(sandbox: Sandbox) -> list[Route]:
    """What happens to an order in VTEX without us: an Admin cancel, a status VTEX holds it in, a
    cancellation request settled; and which documented answers VTEX gives."""
    oms = sandbox.oms

    async def admin_cancel(request: Request) -> Response:
        """Someone cancels the order in VTEX's Admin (e.g. during the grace period)."""
        payload, _ = await _body(request)
        return _json_response(oms.cancel(request.path_params["order_id"], payload or {"reason": "Admin"}))

    async def order_status(request: Request) -> Response:
        """Put an order in any VTEX status and keep it there (`hold`, default true)."""
        payload, bad = await _body(request)
        if bad or not isinstance(payload, dict):
            return JSONResponse({"error": "expected {status, hold}"}, status_code=400)
        try:
            order = oms.pin(
                request.path_params["order_id"], payload.get("status"), bool(payload.get("hold", True))
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if order is None:
            return JSONResponse({"error": "unknown order"}, status_code=404)
        return JSONResponse({"orderId": order.order_id, "status": order.status, "held": order.pinned})

    async def cancel_decision(request: Request) -> Response:
        """Settle a waiting (or stuck) cancellation request: {"decision": "accept" | "deny"}."""
        payload, _ = await _body(request)
        decision = payload.get("decision") if isinstance(payload, dict) else None
        if decision not in ("accept", "deny"):
            return JSONResponse({"error": "decision must be accept or deny"}, status_code=400)
        order = oms.decide_cancel(request.path_params["order_id"], decision)
        if order is None:
            return JSONResponse({"error": "no cancellation request for that order"}, status_code=404)
        return JSONResponse({"orderId": order.order_id, "status": order.status})

    async def approve(request: Request) -> Response:
        """The seller approves an order waiting for manual authorization, as in VTEX Admin."""
        order = oms.approve(request.path_params["order_id"])
        if order is None:
            return JSONResponse({"error": "no order waiting for manual authorization"}, status_code=404)
        return JSONResponse({"orderId": order.order_id, "status": order.status})

    async def value(request: Request) -> Response:
        """The order's value changes in VTEX (an order change): {"change": cents, + or -}."""
        payload, _ = await _body(request)
        change = payload.get("change") if isinstance(payload, dict) else None
        if not isinstance(change, int) or isinstance(change, bool):
            return JSONResponse({"error": "expected {change: cents}"}, status_code=400)
        order = oms.change_value(request.path_params["order_id"], change)
        if order is None:
            return JSONResponse({"error": "unknown order"}, status_code=404)
        return JSONResponse({"orderId": order.order_id, "value": order.value, "status": order.status})

    async def workflow_error(request: Request) -> Response:
        """Flag (or clear) an error in the order's workflow: {"inError": true | false}."""
        payload, _ = await _body(request)
        order = oms.find(request.path_params["order_id"])
        if order is None:
            return JSONResponse({"error": "unknown order"}, status_code=404)
        order.workflow_in_error = bool(payload.get("inError", True)) if isinstance(payload, dict) else True
        return JSONResponse({"orderId": order.order_id, "workflowIsInError": order.workflow_in_error})

    async def behaviour(request: Request) -> Response:
        """Which of VTEX's documented answers the sandbox gives, changed at run time."""
        config = oms.config
        if request.method == "POST":
            payload, bad = await _body(request)
            if bad or not isinstance(payload, dict):
                return JSONResponse({"error": "expected a JSON object"}, status_code=400)
            problem = _apply_behaviour(config, payload)
            if problem:
                return JSONResponse({"error": problem}, status_code=400)
        return JSONResponse({name: getattr(config, name) for name in _BEHAVIOUR})

    return [
        Route("/_sandbox/orders/{order_id}/cancel", admin_cancel, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}/status", order_status, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}/cancel-decision", cancel_decision, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}/approve", approve, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}/workflow-error", workflow_error, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}/value", value, methods=["POST"]),
        Route("/_sandbox/behaviour", behaviour, methods=["GET", "POST"]),
    ]


def _fault_routes(sandbox: Sandbox) -> list[Route]:
    """Faults drawn at random, and holds that park one request at an exact point."""

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            payload, bad = await _body(request)
            if bad or not isinstance(payload, dict):
                return JSONResponse({"error": "expected a JSON object of fault settings"}, status_code=400)
            try:
                sandbox.faults.configure(FaultConfig(**payload))
            except TypeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if "rate_limit_rpm" in payload:
                sandbox.set_rate_limit(payload["rate_limit_rpm"])
        return JSONResponse(sandbox.faults.config.as_dict())

    async def holds(request: Request) -> Response:
        if request.method == "POST":
            payload, _ = await _body(request)
            if not isinstance(payload, dict):
                return JSONResponse({"error": "expected {orderId, operation, when, skip}"}, status_code=400)
            when = payload.get("when", "before")
            if when not in ("before", "after"):
                return JSONResponse({"error": "when must be before or after"}, status_code=400)
            skip = payload.get("skip", 0)
            if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
                return JSONResponse({"error": "skip must be a whole number"}, status_code=400)
            sandbox.faults.holds.append(Hold(payload["orderId"], payload["operation"], when, skip=skip))
        return JSONResponse(
            [
                {
                    "orderId": h.order_id,
                    "operation": h.operation,
                    "when": h.when,
                    "arrived": h.arrived.is_set(),
                }
                for h in sandbox.faults.holds
            ]
        )

    async def release(request: Request) -> Response:
        payload, _ = await _body(request)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "expected {orderId, operation, when, then}"}, status_code=400)
        hold = sandbox.faults.hold_for(
            payload.get("orderId"), payload.get("operation", ""), payload.get("when", "")
        )
        if hold is None:
            return JSONResponse({"error": "no such hold"}, status_code=404)
        then = payload.get("then", "apply" if hold.when == "before" else "respond")
        allowed = ("apply", "discard") if hold.when == "before" else ("respond", "drop")
        if then not in allowed:
            return JSONResponse({"error": f"then must be one of {allowed}"}, status_code=400)
        hold.then = then
        sandbox.faults.holds.remove(hold)
        hold.release.set()
        return JSONResponse({"ok": True})

    return [
        Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/_sandbox/holds", holds, methods=["GET", "POST"]),
        Route("/_sandbox/holds/release", release, methods=["POST"]),
    ]
