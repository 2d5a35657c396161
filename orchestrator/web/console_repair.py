"""Repairing an order from the console: `orchestrator import FILE --replace` for one order, with
its import line in an editor.

The page shows the order as its import line (`intake.replace.bodies`: what the history keeps of
a replaced body). What is posted goes through the very same checks and the same replacement as an
import (`intake.importer.import_lines` with `replace`), so the console can never store an order
the CLI would refuse; a refusal shows the form again with the text as typed and each problem by
its field. A repair keeps the order's id: a line naming another order would import a second one,
which is `import`'s job, not this page's.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.clock import utcnow
from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.intake.importer import Problem, account_of, import_lines, parse_line
from orchestrator.intake.replace import bodies
from orchestrator.store.rows import OrderRow
from orchestrator.vtex.ids import derive_order_id
from orchestrator.web.console import Pages, order_href, posted, signed_redirect
from orchestrator.web.http import caller_of


class RepairPages(Pages):
    def _line(self, row: OrderRow) -> str:
        record: dict[str, Any] = {"affiliateId": row.affiliate_id, **bodies(row)}
        if not record["invoices"]:
            del record["invoices"]
        if record.get("salesChannel") is None:
            record.pop("salesChannel", None)
        if row.account != DEFAULT_ACCOUNT or len(self.settings.all_accounts) > 1:
            record = {"account": row.account, **record}
        return json.dumps(record, indent=2, ensure_ascii=False)

    def _form(
        self, request: Request, row: OrderRow, text: str, problems: list[Problem], status: int = 200
    ) -> Response:
        return self.console.page(
            request,
            "repair.html",
            status,
            title=f"Repair {row.order_id}",
            order=row,
            text=text,
            problems=[(p.field, p.message) for p in problems],
        )

    async def repair_form(self, request: Request) -> Response:
        row = await self.console.row_of(request)
        return self._form(request, row, self._line(row), [])

    async def repair(self, request: Request) -> Response:
        form = await posted(request)
        row = await self.console.row_of(request)
        text = form.get("body") or ""
        accounts = list(self.settings.all_accounts)
        record, problems = parse_line(1, text, accounts)
        if record is not None and not problems:
            named = derive_order_id(record["affiliateId"], record["order"]["marketplaceOrderId"])
            if (named, account_of(record, accounts)) != (row.order_id, row.account):
                problems = [
                    Problem(
                        1,
                        "order.marketplaceOrderId",
                        f"names {named}, not {row.order_id}: a repair keeps the order's id and account "
                        "(import a new order with `orchestrator import` instead)",
                    )
                ]
        if problems or record is None:
            return self._form(request, row, text, problems, 422)
        one_line = json.dumps(record, ensure_ascii=False)
        done = await run_in_threadpool(
            lambda: import_lines(
                [one_line],
                self.store,
                utcnow(),
                worker=caller_of(request).actor,
                replace=True,
                accounts=accounts,
            )
        )
        if done.problems:
            return self._form(request, row, text, done.problems, 409 if done.conflict else 422)
        if done.replaced:
            message = f"{row.order_id} repaired: it was {done.replaced[0].was}, and is placed in VTEX again"
        else:
            message = f"{row.order_id} is unchanged: the body is the one stored"
        return signed_redirect(request, order_href(row.order_id, row.account), message)
