"""Amounts of money: yuan with two decimal places, half-cents rounded up (as on a bill).

``cents`` gives the ``Decimal`` to compute and store with; ``money_text`` the same amount as
the text a customer reads ("12.30", never "12.3").
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def cents(value: Decimal | int | float | str) -> Decimal:
    """``value`` rounded to the cent (a float or string is read through its text, so 0.1 is 0.10)."""
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money_text(value: Decimal | int | float | str) -> str:
    return str(cents(value))
