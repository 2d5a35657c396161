"""Every order status string VTEX documents, with the description the sandbox shows for it.

The sandbox walks an order through the fulfillment (seller) flow by itself; the control API can put
an order in any of these statuses and keep it there, to rehearse what the happy path never shows
(an order VTEX holds for a manual authorization, a payment, a cancellation request). Sources:
VTEX-API.md §4.1 (Help Center status table, Feed filter values, known issues).
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "order-created": "Processando",
    "order-accepted": "Pedido aceito",
    "on-order-completed": "Pedido completado",
    "on-order-completed-ffm": "Pedido completado no fulfillment",
    "payment-pending": "Pagamento pendente",
    "payment-approved": "Pagamento aprovado",
    "waiting-for-authorization": "Aguardando confirmação do seller",
    "waiting-for-fulfillment": "Aguardando o WMS",
    "waiting-ffmt-authorization": "Aguardando autorização para despachar",
    "waiting-for-manual-authorization": "Aguardando autorização manual",
    "waiting-for-mkt-authorization": "Aguardando autorização do marketplace",
    "waiting-seller-handling": "Aguardando o seller",
    "waiting-for-seller-decision": "Aguardando decisão do seller",
    "window-to-change-payment": "Janela para alterar pagamento",
    "window-to-change-seller": "Janela para alterar seller",
    "authorize-fulfillment": "Autorizando despacho",
    "window-to-cancel": "Carência para cancelamento",
    "release-to-fulfillment": "Liberado para o fulfillment",
    "ready-for-handling": "Pronto para o manuseio",
    "start-handling": "Iniciar manuseio",
    "handling": "Preparando Entrega",
    "ready-for-invoicing": "Pronto para faturar",
    "invoice": "Verificando Fatura",
    "invoiced": "Faturado",
    "request-cancel": "Cancelamento solicitado",
    "cancellation-requested": "Cancelamento solicitado",
    "cancellation-request-denied": "Cancelamento negado",
    "cancel": "Cancelando",
    "canceled": "Cancelado",
    "order-create-error": "Erro na criação do pedido",
    "replaced": "Substituído",
}

STATUSES = frozenset(DESCRIPTIONS)
