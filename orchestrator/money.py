"""Amounts as people read them. VTEX keeps every amount as an integer in cents of the store's
currency; a person reads "30.70 BRL", not "3070 cents". Two decimals always: VTEX's own values are
hundredths whatever the currency's minor unit. The code goes after the number, which reads the
same in every locale and cannot be mistaken for another currency's symbol."""

from __future__ import annotations


def money(cents: int | None, currency: str) -> str:
    if cents is None:
        return "-"
    whole, part = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}{whole:,}.{part:02d} {currency}"
