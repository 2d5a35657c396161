"""Import validation: all or nothing, every problem named by line and field."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.intake.importer import InputChanged, import_lines
from orchestrator.store.store import Store
from tests.factories import import_lines as lines_of
from tests.factories import import_record

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def count_orders(store: Store) -> int:
    return sum(c.count for c in store.state_counts())


def problems_of(store: Store, lines: list[str]) -> list[tuple[int, str]]:
    report = import_lines(lines, store, NOW)
    assert report.imported == []
    assert count_orders(store) == 0, "a rejected file must write nothing"
    return [(p.line, p.field) for p in report.problems]


def mutate(record: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> str:
    change(record)
    return json.dumps(record)


def test_valid_file_imports_every_order(store: Store) -> None:
    """Ten valid lines become ten orders in state imported, each with an import event."""
    report = import_lines(lines_of(10), store, NOW)
    assert (len(report.imported), report.already_present, report.problems) == (10, [], [])
    row = store.find("ABC-100003")
    assert row is not None and row.state == "imported" and row.invoice_number == "NF100003"
    assert [e["kind"] for e in store.events(row.id)] == ["import"]


def test_bad_json_on_one_line_writes_nothing(store: Store) -> None:
    """One line that is not JSON: nothing is imported and the line is named."""
    lines = lines_of(3)
    lines[1] = '{"affiliateId": "ABC", "order": {'
    assert problems_of(store, lines) == [(2, "(line)")]


def test_missing_and_mistyped_fields_are_named_with_their_path(store: Store) -> None:
    """Every problem of every line is reported, with the field path inside the line."""
    lines = [
        mutate(import_record(1), lambda r: r["order"].pop("marketplaceServicesEndpoint")),
        mutate(import_record(2), lambda r: r["order"]["items"][0].update(quantity="2")),
        mutate(import_record(3), lambda r: r["order"]["clientProfileData"].pop("email")),
        json.dumps(import_record(4)),
        mutate(import_record(5), lambda r: r.pop("order")),
    ]
    assert problems_of(store, lines) == [
        (1, "order.marketplaceServicesEndpoint"),
        (2, "order.items[0].quantity"),
        (3, "order.clientProfileData.email"),
        (5, "order"),
    ]


@pytest.mark.parametrize("affiliate", ["AB", "ABCD", "A-B", 123, None])
def test_affiliate_id_must_be_three_letters_or_digits(store: Store, affiliate: Any) -> None:
    """VTEX refuses other affiliate ids (FMT0031); the import refuses them first."""
    line = mutate(import_record(1), lambda r: r.update(affiliateId=affiliate))
    assert problems_of(store, [line]) == [(1, "affiliateId")]


def test_duplicate_lines_in_one_file_are_refused(store: Store) -> None:
    """The same affiliateId and marketplaceOrderId twice in a file: the later line is named."""
    lines = lines_of(2) + lines_of(1)
    report = import_lines(lines, store, NOW)
    assert [(p.line, p.field) for p in report.problems] == [(3, "order.marketplaceOrderId")]
    assert "duplicates line 1" in report.problems[0].message
    assert count_orders(store) == 0


def test_reimporting_reports_and_changes_nothing(store: Store) -> None:
    """Orders already imported are reported as such; their rows are untouched."""
    import_lines(lines_of(2), store, NOW)
    before = store.find("ABC-100000")
    report = import_lines(lines_of(3), store, datetime(2026, 11, 28, tzinfo=UTC))
    assert report.imported == ["ABC-100002"]
    assert report.already_present == ["ABC-100000", "ABC-100001"]
    assert store.find("ABC-100000") == before


@pytest.mark.parametrize("number", ["NF/123", "#123", "NF 123", "NF123 ", "NF.123"])
def test_invoice_numbers_with_characters_that_break_vtex_are_refused(store: Store, number: str) -> None:
    """VTEX's known issues: '/', '#' and spaces break the tracking update later; refused at import."""
    line = mutate(import_record(1), lambda r: r["invoice"].update(invoiceNumber=number))
    report = import_lines([line], store, NOW)
    assert [(p.line, p.field) for p in report.problems] == [(1, "invoice.invoiceNumber")]
    assert "letters, digits, '-' and '_'" in report.problems[0].message


@pytest.mark.parametrize("number", ["DFG-v7731485plzv-01", "NF_2026_001", "123"])
def test_invoice_numbers_as_vtex_writes_them_are_accepted(store: Store, number: str) -> None:
    """The Orders API's own example is DFG-v7731485plzv-01: '-' and '_' are fine."""
    line = mutate(import_record(1), lambda r: r["invoice"].update(invoiceNumber=number))
    assert import_lines([line], store, NOW).problems == []


def test_an_invoice_may_be_partial_but_never_worth_more_than_the_order(store: Store) -> None:
    """VTEX takes partial invoices (the rest comes later) but never invoices past the order's
    value: 999 of 1100 is stored, 1101 is refused naming the field."""
    over = mutate(import_record(1), lambda r: r["invoice"].update(invoiceValue=1101))
    assert problems_of(store, [over]) == [(1, "invoice.invoiceValue")]
    partial = mutate(import_record(1), lambda r: r["invoice"].update(invoiceValue=999))
    assert import_lines([partial], store, NOW).problems == []
    row = store.find("ABC-100001")
    assert row is not None and [e["value"] for e in row.invoices or ()] == [999]


def test_several_invoices_are_checked_together_against_the_order(store: Store) -> None:
    """`invoices` lists an order's Output invoices, in the order they go out."""
    record = import_record(1)  # 1 x SKU 5 at 900, shipping 200: 1100
    first = dict(record.pop("invoice"), invoiceValue=600, invoiceNumber="NF-A")
    second = dict(first, invoiceNumber="NF-B", invoiceValue=500, items=[])
    assert import_lines([json.dumps({**record, "invoices": [first, second]})], store, NOW).problems == []
    row = store.find("ABC-100001")
    assert row is not None and row.output_numbers == ["NF-A", "NF-B"] and row.invoice_number == "NF-A"


def test_several_invoices_refused_name_the_invoice_and_field(store: Store) -> None:
    """Over the value together, one number twice, an item the order lacks, more than ordered, and
    `invoices` beside `invoice`: each refused with its path; nothing written."""
    base = import_record(2)["invoice"]
    too_much = [
        dict(base, invoiceNumber="NF-1", invoiceValue=1000),
        dict(base, invoiceNumber="NF-2", items=[]),
    ]
    twice = [base, dict(base, invoiceValue=1)]  # one number twice: over the value and items with it
    extra_item = [dict(base, items=[*base["items"], {"id": "999", "price": 1, "quantity": 1}])]
    more_than_ordered = [dict(base, items=[dict(base["items"][0], quantity=2)])]
    lines = [
        {**import_record(n, with_invoice=False), "invoices": invoices}
        for n, invoices in enumerate((too_much, twice, extra_item, more_than_ordered), 2)
    ]
    lines.append({**import_record(6), "invoices": [base]})  # beside its `invoice`
    assert problems_of(store, [json.dumps(line) for line in lines]) == [
        (1, "invoices[1].invoiceValue"),
        (2, "invoices[1].invoiceNumber"),
        (2, "invoices[1].invoiceValue"),
        (2, "invoices[1].items"),
        (3, "invoices[0].items"),
        (4, "invoices[0].items"),
        (5, "invoices"),
    ]


def test_invoice_value_may_be_a_string_of_cents(store: Store) -> None:
    """VTEX's spec types invoiceValue as a string; "1100" is accepted and stored as 1100."""
    line = mutate(import_record(1), lambda r: r["invoice"].update(invoiceValue="1100"))
    report = import_lines([line], store, NOW)
    assert report.problems == []
    row = store.find("ABC-100001")
    assert row is not None and row.invoices is not None and row.invoices[0]["body"]["invoiceValue"] == 1100


def test_unknown_top_level_fields_are_refused(store: Store) -> None:
    """A typo such as 'invoce' must not silently drop the invoice."""
    line = mutate(import_record(1), lambda r: r.update(invoce=r.pop("invoice")))
    assert problems_of(store, [line]) == [(1, "invoce")]


def test_blank_lines_are_ignored(store: Store) -> None:
    """Empty lines (a trailing newline, spacing) are not orders and not errors."""
    report = import_lines(["", *lines_of(2), "   "], store, NOW)
    assert (len(report.imported), report.problems) == (2, [])


def test_a_large_file_is_read_twice_and_written_in_one_transaction(store: Store) -> None:
    """Validation and writing are two passes over the input (memory stays flat); if the input reads
    differently the second time, the chunks already written are rolled back with the rest."""
    good = lines_of(1234)
    changed = [*good[:1200], "{not json", *good[1201:]]
    reads = iter([good, changed])
    with pytest.raises(InputChanged, match="line 1201"):
        import_lines(lambda: next(reads), store, NOW)
    assert count_orders(store) == 0

    report = import_lines(lambda: iter(good), store, NOW)
    assert len(report.imported) == 1234 and report.lines == 1234
    assert count_orders(store) == 1234


def _logistics(record: dict[str, Any], *entries: dict[str, Any]) -> None:
    record["order"]["shippingData"]["logisticsInfo"] = list(entries)


SLA = {"selectedSla": "Normal", "price": 200}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda r: _logistics(r, {**SLA, "itemIndex": 1}), "logisticsInfo[0].itemIndex", "FMT0057"),
        (
            lambda r: _logistics(r, {**SLA, "itemIndex": 0}, {**SLA, "itemIndex": 0}),
            "logisticsInfo[1].itemIndex",
            "FMT0089",
        ),
        (
            lambda r: r["order"].update(marketplaceServicesEndpoint=""),
            "marketplaceServicesEndpoint",
            "FMT0070",
        ),
        (lambda r: r["order"].update(marketplacePaymentValue=0), "marketplacePaymentValue", "FMT0042"),
        (lambda r: r["invoice"].update(issuanceDate="2026-11-27"), "invoice.issuanceDate", "date and time"),
        (
            lambda r: r["invoice"].update(dispatchedDate="yesterday"),
            "invoice.dispatchedDate",
            "date and time",
        ),
        (lambda r: r["order"]["clientProfileData"].update(email="ana"), "email", "FMT0032"),
        (lambda r: r["order"]["shippingData"]["address"].update(country="Brasil"), "country", "ISO"),
        (lambda r: r["order"]["shippingData"].update(updateStatus="outdated"), "updateStatus", "outdated"),
        (
            lambda r: r["order"]["shippingData"]["logisticsInfo"][0].update(lockTTL="eight days"),
            "lockTTL",
            "FMT0077",
        ),
        (lambda r: r["order"]["items"][0].update(id=""), "items[0].id", "FMT0039"),
    ],
)
def test_import_refuses_what_vtex_refuses(
    store: Store, change: Callable[[dict[str, Any]], None], field: str, says: str
) -> None:
    """Each refusal VTEX documents that needs no VTEX to check: named by line and field, and why."""
    record = import_record(1)
    if "marketplacePaymentValue" in field:
        record.pop("invoice")
    change(record)
    report = import_lines([json.dumps(record)], store, NOW)
    assert report.imported == [] and len(report.problems) == 1, report.problems
    [problem] = report.problems
    assert problem.line == 1 and problem.field.endswith(field) and says in problem.message


def test_a_utf8_byte_order_mark_is_fine(store: Store) -> None:
    """Excel and many Windows tools start the file with a BOM: the first line still imports."""
    lines = [b"\xef\xbb\xbf" + lines_of(1)[0].encode(), lines_of(1, start=1)[0].encode()]
    report = import_lines(lines, store, NOW)
    assert (len(report.imported), report.problems) == (2, [])


def test_tracking_dispatch_date_must_be_a_date_time() -> None:
    """The tracking update's dispatchedDate, like the invoice's dates, needs a time."""
    from orchestrator.ops.operations import tracking_problems

    assert tracking_problems({"trackingNumber": "TR1", "dispatchedDate": "2026-11-27T10:00:00Z"}) == []
    [(field, message)] = tracking_problems({"trackingNumber": "TR1", "dispatchedDate": "2026-11-27"})
    assert field == "dispatchedDate" and "date and time" in message
