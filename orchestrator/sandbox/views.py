"""How the sandbox's orders look on the wire: the Place reply element and the Get order document.

Field names and types follow VTEX's OpenAPI files (Get order: `VTEX - Orders API`; the Place reply:
the array form of the Marketplace Protocol spec before its 2024 rewrite, see VTEX-API.md §1.1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.sandbox.records import SandboxConfig, SandboxOrder
from orchestrator.sandbox.statuses import DESCRIPTIONS


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def _follow_up_email(order: SandboxOrder) -> str:
    return f"{order.order_id.lower().replace('-', '')}@ct.sandbox.vtex.example"


_ADDRESS_DEFAULTS: dict[str, Any] = {
    "addressId": None,
    "neighborhood": None,
    "complement": None,
    "reference": None,
    "geoCoordinates": [],
}
_CLIENT_DEFAULTS: dict[str, Any] = {
    "phone": None,
    "corporateName": None,
    "tradeName": None,
    "corporateDocument": None,
    "stateInscription": None,
    "corporatePhone": None,
    "isCorporate": False,
}


def _address(address: dict[str, Any] | None, nulls: bool) -> dict[str, Any] | None:
    """The Place reply shows absent fields as null (as VTEX's example does); Get order types them as
    non-nullable strings, so there they are left out."""
    if address is None:
        return None
    full = {**_ADDRESS_DEFAULTS, **address, "addressId": address.get("addressId") or "Home"}
    return full if nulls else {k: v for k, v in full.items() if v is not None}


def _shipping(
    order: SandboxOrder, selected_key: str = "selectedAddresses", nulls: bool = False
) -> dict[str, Any]:
    shipping = order.request.get("shippingData") or {}
    address = _address(shipping.get("address"), nulls)
    return {
        "isFOB": False,
        "address": address,
        selected_key: [address] if address else [],
        "logisticsInfo": [
            {
                "itemIndex": info.get("itemIndex"),
                "selectedSla": info.get("selectedSla"),
                "addressId": address["addressId"] if address else None,
                "selectedDeliveryChannel": "delivery",
                "deliveryIds": [{"warehouseId": "1_1", "dockId": "1"}],
                "lockTTL": info.get("lockTTL"),
                "shippingEstimate": info.get("shippingEstimate"),
                "price": info.get("price"),
                "deliveryWindow": info.get("deliveryWindow"),
            }
            for info in shipping.get("logisticsInfo") or []
        ],
        "trackingHints": [],
    }


def place_reply(orders: list[SandboxOrder], form: str) -> Any:
    """Place's answer: an array with one element per order (VTEX's 2023 spec and every example),
    or, with `form="object"`, the 2024+ spec's `{orderId, status, message, orderData}`."""
    elements = [place_reply_element(order) for order in orders]
    if form != "object":
        return elements
    first = elements[0]
    return {
        "orderId": first["orderId"],
        "status": "success",
        "message": "Order placed successfully",
        "orderData": first,
    }


def authorize_reply(order: SandboxOrder, status: int, now: float) -> Any:
    """Authorize dispatch's answer in each documented form: 200 `{marketplaceOrderId}` (2023 spec),
    201 `{status, message, orderId, details}` (current spec), or 204 without a body."""
    marketplace_order_id = order.request["marketplaceOrderId"]
    if status == 204:
        return None
    if status == 201:
        return {
            "status": "success",
            "message": "Dispatch authorized",
            "orderId": order.order_id,
            "details": {
                "createdAt": _iso(now),
                "marketplaceOrderId": marketplace_order_id,
                "status": "pending",
            },
        }
    return {"marketplaceOrderId": marketplace_order_id}


def place_reply_element(order: SandboxOrder) -> dict[str, Any]:
    body = order.request
    return {
        "marketplaceOrderId": body["marketplaceOrderId"],
        "orderId": order.order_id,
        "followUpEmail": _follow_up_email(order),
        "items": [
            {
                "id": item["id"],
                "quantity": item["quantity"],
                "seller": item["seller"],
                "priceTable": None,
                "comission": item.get("commission", 0),
                "freightComission": item.get("freightCommission", 0),
                "price": item.get("price"),
                "bundleItems": item.get("bundleItems", []),
                "priceTags": item.get("priceTags", []),
                "measurementUnit": item.get("measurementUnit", "un"),
                "unitMultiplier": item.get("unitMultiplier", 1),
                "isGift": item.get("isGift", False),
            }
            for item in body["items"]
        ],
        "clientProfileData": {**_CLIENT_DEFAULTS, **body["clientProfileData"], "userProfileId": None},
        # The 2023 spec's example spells this key in lower case; Get order uses selectedAddresses.
        "shippingData": _shipping(order, "selectedaddresses", nulls=True),
        "paymentData": None,
        "customData": None,
    }


def _items(order: SandboxOrder) -> list[dict[str, Any]]:
    from_catalog: list[dict[str, Any]] = []
    for index, item in enumerate(order.request["items"]):
        price = item.get("price") or 0
        from_catalog.append(
            {
                "uniqueId": f"{order.order_id}-{index}",
                "id": item["id"],
                "productId": item["id"],
                "ean": None,
                "lockId": f"{order.order_id}-lock",
                "quantity": item["quantity"],
                "seller": item["seller"],
                "name": f"Sandbox product {item['id']}",
                "refId": item["id"],
                "price": price,
                "listPrice": price,
                "manualPrice": None,
                "priceTags": [],
                "imageUrl": "",
                "detailUrl": f"/sandbox-product-{item['id']}/p",
                "sellerSku": item["id"],
                "priceValidUntil": None,
                "commission": item.get("commission", 0),
                "tax": 0,
                "preSaleDate": None,
                "measurementUnit": item.get("measurementUnit", "un"),
                "unitMultiplier": int(item.get("unitMultiplier", 1)),
                "sellingPrice": price,
                "isGift": bool(item.get("isGift", False)),
                "shippingPrice": None,
                "rewardValue": 0,
                "freightCommission": item.get("freightCommission", 0),
            }
        )
    return from_catalog


def order_view(order: SandboxOrder, config: SandboxConfig) -> dict[str, Any]:
    """The Get order document (a subset of VTEX's fields, with VTEX's names and types)."""
    body = order.request
    cancellable = (
        order.status not in ("invoice", "invoiced", "canceled", "cancel", "cancellation-requested")
        and not order.has_output_invoice
    )
    return {
        "orderId": order.order_id,
        "sequence": str(order.sequence),
        "marketplaceOrderId": body["marketplaceOrderId"],
        "marketplaceServicesEndpoint": body.get("marketplaceServicesEndpoint", ""),
        "sellerOrderId": f"00-{order.order_id}",
        "origin": "Fulfillment",
        "affiliateId": order.affiliate_id,
        "salesChannel": order.sales_channel,
        "merchantName": None,
        "status": order.status,
        "workflowIsInError": order.workflow_in_error,
        "statusDescription": DESCRIPTIONS.get(order.status, order.status),
        "value": order.value,
        "creationDate": _iso(order.created_at),
        "lastChange": _iso(order.last_change),
        "orderGroup": order.order_id,
        "followUpEmail": _follow_up_email(order),
        "lastMessage": None,
        "hostname": config.account,
        "isCompleted": True,
        "roundingError": 0,
        "orderFormId": f"sandbox{order.sequence}",
        "allowCancellation": cancellable,
        "allowEdition": False,
        "isCheckedIn": False,
        "authorizedDate": _iso(order.authorized_at),
        "invoicedDate": _iso(order.invoiced_at),
        "cancelReason": order.cancel_reason,
        "totals": [
            {"id": "Items", "name": "Total dos Itens", "value": order.items_total + order.value_change},
            {"id": "Discounts", "name": "Total dos Descontos", "value": 0},
            {"id": "Shipping", "name": "Total do Frete", "value": order.shipping_total},
            {"id": "Tax", "name": "Total da Taxa", "value": 0},
        ],
        "items": _items(order),
        "clientProfileData": {
            "email": body["clientProfileData"].get("email"),
            "firstName": body["clientProfileData"].get("firstName"),
            "lastName": body["clientProfileData"].get("lastName"),
            "documentType": body["clientProfileData"].get("documentType"),
            "document": body["clientProfileData"].get("document"),
            "phone": body["clientProfileData"].get("phone"),
            "isCorporate": bool(body["clientProfileData"].get("isCorporate") or False),
        },
        "shippingData": _shipping(order),
        # Absent optional package fields are left out: Get order types most of them non-nullable.
        "packageAttachment": {
            "packages": [{k: v for k, v in p.items() if v is not None} for p in order.packages.values()]
        },
        "marketplace": {
            "baseURL": body.get("marketplaceServicesEndpoint", ""),
            "isCertified": None,
            "name": order.affiliate_id,
        },
        # Get order's schema spells these keys in PascalCase; absent until the order is canceled.
        "cancellationData": (
            {
                "RequestedByUser": False,
                "RequestedBySystem": False,
                "RequestedBySellerNotification": False,
                "RequestedByPaymentNotification": False,
                "Reason": order.cancel_reason or "",
                "CancellationDate": _iso(order.canceled_at),
            }
            if order.canceled_at
            else None
        ),
    }
