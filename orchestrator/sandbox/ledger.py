"""The sandbox's ledger: per order, every effect VTEX would have applied, counted.

This is how tests (and users rehearsing) prove the promise: exactly one accepted Place, one accepted
Start handling, one distinct invoice number, and never more invoiced than the order is worth.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

REQUEST_LOG_SIZE = 200_000


@dataclass
class LedgerEntry:
    order_id: str
    value: int = 0
    places_accepted: int = 0
    places_rejected_duplicate: int = 0
    authorizations: int = 0
    authorizations_repeated: int = 0
    authorizations_refused: int = 0  # while the order waited for the seller's manual authorization
    start_handling_accepted: int = 0
    start_handling_refused: int = 0
    invoice_numbers: list[str] = field(default_factory=list)
    invoice_notifications: int = 0
    invoices_refused: int = 0  # ORD039 (`invoice_refusals`), not applied
    invoiced_total: int = 0
    returned_total: int = 0  # Input invoices (returns)
    invoice_numbers_repeated: int = 0  # a number VTEX held already, sent again (only a new receipt)
    tracking_updates: int = 0
    tracking_refused: int = 0
    authorize_sales_channels: list[str | None] = field(default_factory=list)
    cancels_accepted: int = 0
    cancels_refused: int = 0
    concurrent_requests: int = 0  # requests that came while another client's was in flight
    most_requests_at_once: int = 0  # from any clients, the same one included

    def as_dict(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "value": self.value,
            "placesAccepted": self.places_accepted,
            "placesRejectedDuplicate": self.places_rejected_duplicate,
            "authorizations": self.authorizations,
            "authorizationsRepeated": self.authorizations_repeated,
            "authorizationsRefused": self.authorizations_refused,
            "startHandlingAccepted": self.start_handling_accepted,
            "startHandlingRefused": self.start_handling_refused,
            "distinctInvoiceNumbers": len(self.invoice_numbers),
            "invoiceNumbers": list(self.invoice_numbers),
            "invoiceNotifications": self.invoice_notifications,
            "invoicesRefused": self.invoices_refused,
            "invoicedTotal": self.invoiced_total,
            "returnedTotal": self.returned_total,
            "invoiceNumbersRepeated": self.invoice_numbers_repeated,
            "trackingUpdates": self.tracking_updates,
            "trackingRefused": self.tracking_refused,
            "authorizeSalesChannels": list(self.authorize_sales_channels),
            "cancelsAccepted": self.cancels_accepted,
            "cancelsRefused": self.cancels_refused,
            "concurrentRequests": self.concurrent_requests,
            "mostRequestsAtOnce": self.most_requests_at_once,
        }


class Ledger:
    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        self.requests = 0
        self.requests_by_operation: dict[str, int] = {}
        self.rate_limited = 0
        self.faults_injected: dict[str, int] = {}
        # Every VTEX request: arrival time, what it was, and how it was answered (bounded).
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def entry(self, order_id: str) -> LedgerEntry:
        found = self._entries.get(order_id)
        if found is None:
            found = self._entries[order_id] = LedgerEntry(order_id)
        return found

    def get(self, order_id: str) -> LedgerEntry | None:
        return self._entries.get(order_id)

    def entries(self) -> list[LedgerEntry]:
        return list(self._entries.values())

    def count_request(self, operation: str) -> None:
        self.requests += 1
        self.requests_by_operation[operation] = self.requests_by_operation.get(operation, 0) + 1

    def log_request(
        self,
        arrived: float,
        *,
        operation: str,
        order_id: str | None,
        client: str,
        status: int,
        retry_after: str | None,
        operation_id: str | None = None,
    ) -> None:
        self.request_log.append(
            {
                "at": arrived,
                "operation": operation,
                "orderId": order_id,
                "client": client,
                "status": status,
                "retryAfter": retry_after,
                "operationId": operation_id,
            }
        )

    def count_fault(self, kind: str) -> None:
        self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        entries = self._entries.values()
        return {
            "orders": len(self._entries),
            "requests": self.requests,
            "requestsByOperation": dict(self.requests_by_operation),
            "rateLimited": self.rate_limited,
            "faultsInjected": dict(self.faults_injected),
            "ordersWithDuplicatePlace": sum(1 for e in entries if e.places_accepted > 1),
            "ordersWithDuplicateStartHandling": sum(1 for e in entries if e.start_handling_accepted > 1),
            "ordersWithSeveralInvoiceNumbers": sum(1 for e in entries if len(e.invoice_numbers) > 1),
            "ordersOverInvoiced": sum(1 for e in entries if e.value and e.invoiced_total > e.value),
            "ordersWithRepeatedInvoiceNumbers": sum(1 for e in entries if e.invoice_numbers_repeated),
            "ordersOverReturned": sum(1 for e in entries if e.returned_total > e.invoiced_total),
            "ordersWithConcurrentRequests": sum(1 for e in entries if e.concurrent_requests > 0),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "orders": [e.as_dict() for e in self._entries.values()]}
