"""What can go wrong when talking to VTEX, sorted by what the engine must do about it.

    VtexError                      operation, order_id, http_status, code, message
    ├── RetryableError             the call did not take effect; sending it again is safe
    │   ├── RateLimited            429: wait `retry_after` seconds; not a failed attempt
    │   │   └── Throttled          not even sent: our own budget would have made it wait too long
    │   │       └── OutOfTime      not even sent: the step's lease has no time left for a call
    │   ├── NotVtexRead *          a read answered by something that is not VTEX (an HTML page, a
    │   │                          200 of the wrong shape, a body without end): not an answer
    │   └── Misdirected *          3xx: VTEX_BASE_URL points somewhere that redirects; not applied
    ├── AmbiguousError             the call may have taken effect (timeout after sending, connection
    │   │                          dropped, 5xx on a write): reconcile before anything is re-sent
    │   └── NotVtexWrite *         a write answered by something that is not VTEX: it may or may not
    │                              have reached VTEX behind it, so it is reconciled like a timeout
    └── PermanentError             VTEX refused; sending the same request again cannot help
        ├── AuthError              401: the credentials are wrong for the whole account
        ├── MissingPermission      403: the app key lacks the License Manager resource of this
        │                          one kind of call (`resource`); the account's other calls go on
        ├── NotFound               404: VTEX does not know the order (or the invoice)
        ├── Conflict               409: the order is not in a status that allows the call (OMS003)
        └── OrderIdMismatch        Place's answer names another order id than the one we derived
    RetriesExhausted               raised by the engine when a step's retry policy runs out

    * EndpointError: the URL does not behave like VTEX at all. It is no order's fault, so it is
      never an attempt of the order; the whole account pauses instead, for longer each time.

Everything is classified in exactly one place, `classify_response` and `classify_transport_error`,
and every error carries VTEX's own code and message when it sent one: from its error envelope, or
from the `x-vtex-error-code` and `x-vtex-error-message` headers when the body has none (a 403 with
a plain-text body). Each also carries VTEX's `x-vtex-operation-id` and `x-request-id` when the
answer had them: what VTEX support can trace a call by. Messages never contain
credentials: requests carry them only in headers, headers are never part of an error, and every
message passes the redaction point when the error is made (it is logged, shown and stored).
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx

from orchestrator.errors import OrchestratorError
from orchestrator.redaction import redact
from orchestrator.vtex.permissions import resource_of


class VtexError(OrchestratorError):
    """Base of every failure of a VTEX call."""

    exit_code = 1
    serve_status = 502  # a gateway's answer: VTEX's own status is `http_status`

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        order_id: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.operation = operation
        self.order_id = order_id
        self.http_status = http_status
        self.code = code
        self.duration_ms: float | None = None
        self.trace: dict[str, str] = {}  # VTEX's ids of the call (`trace_ids`), when it answered
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"{self.operation} {self.order_id}" if self.order_id else self.operation
        status = f" HTTP {self.http_status}" if self.http_status is not None else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{where}:{status}{code} {self.message}".strip()


class RetryableError(VtexError):
    """The request never took effect (it was not sent, or VTEX refused it before acting)."""


class RateLimited(RetryableError):
    def __init__(self, message: str, *, retry_after: float | None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class Throttled(RateLimited):
    """Not sent: the request budget, or a pause after a 429, would hold it longer than allowed."""

    def __init__(
        self, wait: float, *, operation: str = "request-budget", order_id: str | None = None
    ) -> None:
        super().__init__(
            f"request budget: next free slot in {wait:.1f}s",
            retry_after=wait,
            operation=operation,
            order_id=order_id,
        )


class OutOfTime(Throttled):
    """Not sent: the step that would make it has too little of its lease left to wait for an
    answer (see `orchestrator.vtex.client.calls_end_by`); the next claim makes it."""

    def __init__(self, *, operation: str, order_id: str | None = None) -> None:
        RateLimited.__init__(
            self,
            "not sent: the step's lease leaves no time for the call; the next claim makes it",
            retry_after=0.0,
            operation=operation,
            order_id=order_id,
        )


class AmbiguousError(VtexError):
    """The request may or may not have taken effect."""


class PermanentError(VtexError):
    """VTEX refused the request for a reason that repeating it will not change."""


class AuthError(PermanentError):
    pass


class MissingPermission(PermanentError):
    """403: the app key's roles lack `resource`, the License Manager resource this call needs."""

    def __init__(self, message: str, **kw: Any) -> None:
        self.resource = resource_of(kw["operation"])
        super().__init__(message, **kw)

    def describe(self) -> str:
        return f"{super().describe()} (the app key lacks the License Manager resource {self.resource!r})"


class NotFound(PermanentError):
    pass


class Conflict(PermanentError):
    pass


class EndpointError(VtexError):
    """The URL answered, but not as VTEX answers: a configuration problem of the whole account."""


class NotVtexRead(RetryableError, EndpointError):
    pass


class NotVtexWrite(AmbiguousError, EndpointError):
    pass


class Misdirected(RetryableError, EndpointError):
    def __init__(self, message: str, *, location: str | None, **kw: Any) -> None:
        self.location = location
        super().__init__(message, **kw)


class OrderIdMismatch(PermanentError):
    pass


class RetriesExhausted(VtexError):
    """A step failed as many times as its retry policy allows; carries the last failure."""

    def __init__(self, attempts: int, last: VtexError | str, *, operation: str, order_id: str | None) -> None:
        self.attempts = attempts
        self.last = last
        detail = last.describe() if isinstance(last, VtexError) else last
        code = (
            last.code or (str(last.http_status) if last.http_status else None)
            if isinstance(last, VtexError)
            else None
        )
        super().__init__(
            f"gave up after {attempts} attempts; last: {detail}",
            operation=operation,
            order_id=order_id,
            code=code,
        )


def parse_error_envelope(body: bytes) -> tuple[str | None, str | None]:
    """VTEX's `{"error": {"code", "message"}}`, tolerating anything else a proxy might send."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return None, text[:300] or None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            return (str(code) if code is not None else None, str(message) if message else None)
        if isinstance(data.get("message"), str):
            return (str(data["code"]) if data.get("code") is not None else None, data["message"])
        if isinstance(data.get("Message"), str):
            return None, data["Message"]
    return None, None


# Response headers VTEX stamps on its answers, kept with each call (`Call.trace`, `VtexError.trace`).
TRACE_HEADERS = {"x-vtex-operation-id": "operationId", "x-request-id": "requestId"}


def trace_ids(headers: httpx.Headers) -> dict[str, str]:
    """VTEX's ids of one answer, by the names history and JSON use (`operationId`, `requestId`)."""
    found = {}
    for header, name in TRACE_HEADERS.items():
        value = headers.get(header)
        if value:
            found[name] = value[:100]
    return found


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_response(
    status: int,
    headers: httpx.Headers,
    content: bytes,
    reason: str,
    *,
    operation: str,
    order_id: str | None,
    is_write: bool,
) -> VtexError:
    """Turn a non-2xx answer into the error the engine acts on."""
    code, message = parse_error_envelope(content)
    if code is None and headers.get("x-vtex-error-code"):
        code = headers["x-vtex-error-code"][:64]
    if headers.get("x-vtex-error-message") and (message is None or not _is_json(content)):
        message = unquote(headers["x-vtex-error-message"])[:300]
    message = message or reason or "no message"
    kw: dict[str, Any] = {"operation": operation, "order_id": order_id, "http_status": status, "code": code}
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RateLimited(message, retry_after=retry_after, **kw)
    if status == 401:
        return AuthError(message, **kw)
    if status == 403:
        return MissingPermission(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 409:
        return Conflict(message, **kw)
    if status == 408:
        return AmbiguousError(message, **kw) if is_write else RetryableError(message, **kw)
    if 400 <= status < 500:
        return PermanentError(message, **kw)
    # 5xx: VTEX (or a gateway in front of it) may have applied a write before failing.
    return AmbiguousError(message, **kw) if is_write else RetryableError(message, **kw)


def _is_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return False
    return True


# Transport failures that happen before a single byte of the request left: safe to resend.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)


def classify_transport_error(
    exc: httpx.TransportError | httpx.DecodingError, *, operation: str, order_id: str | None, is_write: bool
) -> VtexError:
    """Map an httpx transport error; a write that may have reached VTEX is ambiguous."""
    kind = type(exc).__name__
    detail = str(exc) or kind
    message = f"{kind}: {detail}" if detail != kind else kind
    kw: dict[str, Any] = {"operation": operation, "order_id": order_id}
    if isinstance(exc, _NOT_SENT) or not is_write:
        return RetryableError(message, **kw)
    return AmbiguousError(message, **kw)
