"""`orchestrator import`: JSON Lines in, orders in the database, all or nothing.

One order per line: `{"affiliateId": "ABC", "order": <place-order body>, "invoices": [<invoice
body>, ...]}` (`invoices` optional, its Output invoices in the order they go out; `invoice`, one
body, is the same as a list of one; `salesChannel` optional: VTEX's `sc`). The whole input is validated before
anything is written; if any line is wrong, nothing is imported and every problem is reported with
its line number and field. An order already in the database is left untouched when its line is
the same; a line that differs is a problem, unless `replace` is asked and VTEX never accepted the
order, which is then corrected and placed again (`orchestrator.intake.replace`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.errors import Unavailable
from orchestrator.intake import replace as repair
from orchestrator.intake.invoices import output_problems
from orchestrator.intake.line_input import WHOLE_FILE, decode_line
from orchestrator.intake.strict_json import BadJson, load_json
from orchestrator.intake.validation import (
    AFFILIATE_ID,
    SALES_CHANNEL,
    Problems,
    normalise_invoice,
    text_problems,
    validate_invoice,
    validate_order,
)
from orchestrator.store.orders import NewOrder, Replacement
from orchestrator.store.store import Store
from orchestrator.vtex.ids import derive_order_id
from states import rules

KNOWN_KEYS = frozenset({"account", "affiliateId", "order", "invoice", "invoices", "salesChannel"})
EXPECTED = "account, affiliateId, order, invoices, invoice, salesChannel"
SINGLE = (DEFAULT_ACCOUNT,)  # the accounts of a set-up without `[accounts.NAME]` tables
MAX_PROBLEMS = 1000  # kept and printed; beyond them only counted (a binary file has one per line)
Line = str | bytes  # a line as given (tests, the API) or as read from a file (decoded here)


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        text = f"line {self.line}: {self.field}: {self.message}"
        return text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate stays printable


@dataclass(frozen=True)
class ImportReport:
    imported: list[str]
    already_present: list[str]
    problems: list[Problem]
    lines: int
    problems_total: int = 0  # problems found, including those beyond MAX_PROBLEMS
    replaced: list[Replacement] = field(default_factory=list)
    conflict: bool = False  # the problems are lines in conflict with stored orders, not invalid ones

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def empty(self) -> bool:
        """Valid, and nothing in it: an empty file (or only blank lines)."""
        return self.ok and not self.imported and not self.already_present and not self.replaced


def parse_json(number: int, raw: Line) -> tuple[Any, list[Problem]]:
    """The line's JSON value, or the one problem that keeps it from being one."""
    if isinstance(raw, bytes):
        text, why, whole_file = decode_line(number, raw)
        if text is None:
            return None, [Problem(number, WHOLE_FILE if whole_file else "(line)", why or "unreadable")]
    else:
        text = raw.removeprefix("\ufeff") if number == 1 else raw
    try:
        return load_json(text), []
    except BadJson as exc:
        return None, [Problem(number, "(line)", f"not valid JSON: {exc}")]


def parse_line(
    number: int, raw: Line, accounts: Sequence[str] = SINGLE
) -> tuple[Mapping[str, Any] | None, list[Problem]]:
    """The line's record if it is valid, else its problems. Building the order is left to the
    write pass (`build_order`): the check pass needs only its id. `accounts`: the configured
    accounts' names; a line names one when there are several."""
    record, problems = parse_json(number, raw)
    if problems:
        return None, problems
    if not isinstance(record, Mapping):
        return None, [Problem(number, "(line)", f"must be a JSON object, got {type(record).__name__}")]
    problems = [
        Problem(
            number,
            key,
            "unknown field (expected account, affiliateId, order, invoices, invoice, salesChannel)",
        )
        for key in record
        if key not in KNOWN_KEYS
    ]
    problems += _account_problems(number, record.get("account"), accounts)
    affiliate = record.get("affiliateId")
    if affiliate is None:
        problems.append(Problem(number, "affiliateId", "is required"))
    elif not isinstance(affiliate, str) or not AFFILIATE_ID.fullmatch(affiliate):
        problems.append(
            Problem(
                number, "affiliateId", f"{affiliate!r} must be exactly 3 letters or digits (VTEX FMT0031)"
            )
        )
    channel = record.get("salesChannel")
    if channel is not None and (
        isinstance(channel, bool)
        or not isinstance(channel, str | int)
        or not SALES_CHANNEL.fullmatch(str(channel))
    ):
        problems.append(Problem(number, "salesChannel", 'must be a trade policy id such as "1"'))
    order = record.get("order")
    if order is None:
        problems.append(Problem(number, "order", "is required"))
        return None, problems
    if not isinstance(order, Mapping):
        problems.append(Problem(number, "order", f"must be an object, got {type(order).__name__}"))
        return None, problems
    problems += [Problem(number, path, msg) for path, msg in text_problems(record)]
    order_problems = validate_order(order)
    problems += [Problem(number, path, msg) for path, msg in order_problems]
    problems += [Problem(number, p, m) for p, m in _invoices_problems(record, order, not order_problems)]
    if problems:
        return None, problems
    return record, []


def invoice_bodies(record: Mapping[str, Any]) -> list[Any]:
    """A line's invoices: its `invoices` list, or its one `invoice` as a list of one."""
    if "invoices" in record:
        found = record["invoices"]
        return list(found) if isinstance(found, list) else [found]
    return [record["invoice"]] if record.get("invoice") is not None else []


def _invoices_problems(record: Mapping[str, Any], order: Mapping[str, Any], order_ok: bool) -> Problems:
    """The line's invoices, each on its own, then together against its order (once the order
    itself is valid: its own problems say more than what they make of its invoices)."""
    if "invoice" in record and "invoices" in record:
        return [("invoices", "give either `invoices` (a list) or `invoice` (one), not both")]
    key = "invoices" if "invoices" in record else "invoice"
    if key == "invoices" and not isinstance(record["invoices"], list):
        return [("invoices", f"must be a list of invoice bodies, got {type(record['invoices']).__name__}")]
    bodies = invoice_bodies(record)
    value = order.get("marketplacePaymentValue")
    limit = value if isinstance(value, int) else None
    problems: Problems = []
    paths = [f"invoices[{i}]" if key == "invoices" else "invoice" for i in range(len(bodies))]
    for path, body in zip(paths, bodies, strict=True):
        if not isinstance(body, Mapping):
            problems.append((path, f"must be an object, got {type(body).__name__}"))
        else:
            problems += validate_invoice(body, limit, path)
    if problems or not bodies or limit is None or not order_ok:
        return problems
    ordered = rules.item_quantities(order.get("items"))
    return output_problems(bodies, None, ordered, limit, paths)


def _account_problems(number: int, account: Any, accounts: Sequence[str]) -> list[Problem]:
    configured = ", ".join(accounts)
    if account is None:
        if len(accounts) > 1:
            return [
                Problem(number, "account", f"is required: several accounts are configured ({configured})")
            ]
        return []
    if not isinstance(account, str) or account not in accounts:
        return [
            Problem(number, "account", f"{account!r} is not a configured account (configured: {configured})")
        ]
    return []


def account_of(record: Mapping[str, Any], accounts: Sequence[str]) -> str:
    """The account a validated line belongs to: the one it names, or the only one there is."""
    return str(record.get("account") or accounts[0])


def build_order(record: Mapping[str, Any], line: int = 0, accounts: Sequence[str] = SINGLE) -> NewOrder:
    """The order a validated line describes."""
    order, channel = record["order"], record.get("salesChannel")
    return NewOrder(
        account=account_of(record, accounts),
        order_id=derive_order_id(record["affiliateId"], order["marketplaceOrderId"]),
        affiliate_id=record["affiliateId"],
        marketplace_order_id=order["marketplaceOrderId"],
        sales_channel=str(channel) if channel is not None else None,
        place_body=dict(order),
        value=int(order["marketplacePaymentValue"]),
        invoices=tuple(normalise_invoice(body) for body in invoice_bodies(record)),
        line=line,
    )


Progress = Callable[[str, int, int], None]  # (stage, done, total)
PROGRESS_EVERY = 2000
Lines = Iterable[Line] | Callable[[], Iterable[Line]]


@dataclass
class Checked:
    """What the first pass keeps: problems, counts and a digest of the input, not the orders (a
    million parsed orders would need gigabytes; the second pass builds them again as it writes)."""

    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    lines: int = 0
    orders: int = 0
    digest: bytes = b""

    def add(self, problems: list[Problem]) -> None:
        self.problems_total += len(problems)
        room = MAX_PROBLEMS - len(self.problems)
        if room > 0:
            self.problems += problems[:room]


def _blank(raw: Line) -> bool:
    return not raw.strip()


def _digest_bytes(raw: Line) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")


def check_lines(
    lines: Iterable[Line], progress: Progress | None = None, total: int = 0, accounts: Sequence[str] = SINGLE
) -> Checked:
    """Every line validated, duplicates within the input found, nothing written."""
    result = Checked()
    first_seen: dict[tuple[str, str], int] = {}
    digest = hashlib.blake2b()
    for number, raw in enumerate(lines, 1):
        result.lines = number
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress("validating", number, max(total, number))
        if _blank(raw):
            continue
        digest.update(_digest_bytes(raw))
        record, problems = parse_line(number, raw, accounts)
        result.add(problems)
        if any(p.field == WHOLE_FILE for p in problems):
            break  # a UTF-16 or binary file: one problem says it all
        if record is None:
            continue
        order_id = derive_order_id(record["affiliateId"], record["order"]["marketplaceOrderId"])
        key = (account_of(record, accounts), order_id)
        earlier = first_seen.get(key)
        if earlier is not None:
            result.add(
                [
                    Problem(
                        number,
                        "order.marketplaceOrderId",
                        f"duplicates line {earlier} (same affiliateId and marketplaceOrderId: {order_id})",
                    )
                ]
            )
            continue
        first_seen[key] = number
    result.orders, result.digest = len(first_seen), digest.digest()
    return result


class InputChanged(Unavailable):
    """The input read differently the second time; the transaction is rolled back."""


def _orders_again(lines: Iterable[Line], expected: bytes, accounts: Sequence[str]) -> Iterator[NewOrder]:
    """The second pass: lines already validated are only built, and the input must hash as it
    did, or the exception rolls back everything written so far."""
    digest = hashlib.blake2b()
    for number, raw in enumerate(lines, 1):
        if _blank(raw):
            continue
        digest.update(_digest_bytes(raw))
        record, problems = parse_json(number, raw)
        try:
            if problems:
                raise ValueError(problems[0].message)
            yield build_order(record, number, accounts)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputChanged(f"line {number} changed while importing ({exc}); nothing imported") from None
    if digest.digest() != expected:
        raise InputChanged("the input changed while importing; nothing imported")


def import_lines(
    lines: Lines,
    store: Store,
    now: datetime,
    *,
    worker: str | None = None,
    progress: Progress | None = None,
    total: int | None = None,
    replace: bool = False,
    accounts: Sequence[str] = SINGLE,
    dry_run: bool = False,
) -> ImportReport:
    """Validate everything, then write everything in one transaction, in two passes over `lines`
    so memory stays flat whatever the input's size. Give a sequence, or a function that reads
    the input afresh each time it is called (a file), never a one-shot iterator. `dry_run`:
    the same checks against the stored orders, then nothing written (the transaction is rolled
    back); the report says what the import would have done."""
    read = lines if callable(lines) else (lambda: lines)
    if total is None and isinstance(lines, Sized):
        total = len(lines)
    checked = check_lines(read(), progress, total or 0, accounts)
    if progress is not None:
        progress("validating", checked.lines, checked.lines)
    if checked.problems:
        return ImportReport([], [], checked.problems, checked.lines, checked.problems_total)
    if not checked.orders:
        return ImportReport([], [], [], checked.lines)

    def written(done: int) -> None:
        if progress is not None:
            progress("writing", done, checked.orders)

    decide = partial(repair.decide, replace=replace)
    orders = _orders_again(read(), checked.digest, accounts)
    outcome = store.insert_orders(orders, now, worker, written, decide, dry_run=dry_run)
    if outcome.conflicts:
        problems = [Problem(c.line, c.field, c.message) for c in outcome.conflicts]
        return ImportReport([], [], problems, checked.lines, len(problems), conflict=True)
    return ImportReport(
        outcome.inserted, outcome.already_present, [], checked.lines, replaced=outcome.replaced
    )
