"""Money arithmetic: exact until the one place where an amount is shown or billed.

The rule (also in docs/metering.md):

- Metered cost is kept exact. A minute of GPU time costs `rate x gpu_seconds / 3600`, where `rate` is the GPU type's
  hourly price per GPU in force at the start of that minute. Rows store `price_seconds = rate x gpu_seconds`
  (an exact Decimal: `rate` has 4 places, `gpu_seconds` is whole) and sums of it stay exact; the division by 3600
  happens once, on a total, with `fractions.Fraction`, so nothing is lost in between.
- An amount is rounded only for display and on statement lines, to the currency's minor unit (cents for USD/EUR,
  none for JPY, 3 places for KWD, ...), half to even ("banker's rounding").
- A statement's lines are allocated, not rounded one by one: the statement total is the exact total rounded once;
  each line gets its exact amount rounded down, and the cents left over go, one each, to the lines with the largest
  remainders (ties: the earlier line key). So the lines always add up to the rounded total, to the cent.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

SECONDS_PER_HOUR = 3600
# ISO 4217 minor units that are not 2. Everything else has cents.
_NO_MINOR_UNIT = [
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "ISK",
    "JPY",
    "KMF",
    "KRW",
    "PYG",
    "RWF",
    "UGX",
    "UYI",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
]
_THREE_PLACES = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
_MINOR_UNITS = {**dict.fromkeys(_NO_MINOR_UNIT, 0), **dict.fromkeys(_THREE_PLACES, 3)}


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    """The smallest amount of the currency: Decimal('0.01') for USD."""
    return Decimal(1).scaleb(-minor_units(currency))


def exact_cost(price_seconds: Decimal | int) -> Fraction:
    """The exact cost of `price_seconds` (sum of hourly rate x GPU-seconds)."""
    return Fraction(Decimal(price_seconds)) / SECONDS_PER_HOUR


def _to_decimal(value: Fraction | Decimal | int) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(Decimal(value))


def round_money(value: Fraction | Decimal | int, currency: str) -> Decimal:
    """Round an exact amount to the currency's minor unit, half to even."""
    exact = _to_decimal(value)
    scale = 10 ** minor_units(currency)
    scaled = exact * scale
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return (Decimal(floor) / scale).quantize(quantum(currency), rounding=ROUND_HALF_EVEN)


def allocate(amounts: Mapping[K, Fraction | Decimal | int], currency: str) -> dict[K, Decimal]:
    """Round each exact amount so that the results add up to the rounded total (largest remainder).

    Works for negative amounts too (an adjustment): every amount is floored to the minor unit and the units
    still missing to reach `round_money(total)` go to the largest remainders; ties go to the earlier key
    (keys are compared in the mapping's order).
    """
    scale = 10 ** minor_units(currency)
    q = quantum(currency)
    exact = {key: _to_decimal(value) * scale for key, value in amounts.items()}
    total_units = int(round_money(sum(exact.values(), Fraction(0)) / scale, currency) * scale)
    floors = {key: value.numerator // value.denominator for key, value in exact.items()}
    missing = total_units - sum(floors.values())
    position = {key: index for index, key in enumerate(exact)}
    order = sorted(exact, key=lambda key: (-(exact[key] - floors[key]), position[key]))
    for key in order[:missing]:
        floors[key] += 1
    return {key: (Decimal(units) / scale).quantize(q, rounding=ROUND_FLOOR) for key, units in floors.items()}


def format_money(value: Decimal | Fraction | int | None, currency: str) -> str:
    """`1,234.50 USD`: rounded to the minor unit for display only."""
    if value is None:
        return "—"
    amount = round_money(value, currency)
    return f"{amount:,.{minor_units(currency)}f} {currency}"
