"""Money stays exact until it is shown or billed; statement lines always add up to the rounded total."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from apps.metering.money import allocate, exact_cost, format_money, minor_units, round_money


def test_cost_of_a_minute_is_exact():
    # One GPU at 2.5000/h for 60 s: 2.5 x 60 / 3600 = 1/24 exactly, not 0.041666... cut somewhere.
    assert exact_cost(Decimal("2.5000") * 60) == Fraction(1, 24)
    assert sum((exact_cost(Decimal("2.5") * 60) for _ in range(24 * 60)), Fraction(0)) == 60


def test_rounding_is_half_to_even_at_the_minor_unit():
    assert round_money(Fraction(1, 200), "USD") == Decimal("0.00")  # 0.005 -> 0.00
    assert round_money(Fraction(3, 200), "USD") == Decimal("0.02")  # 0.015 -> 0.02
    assert round_money(Fraction(2, 3), "USD") == Decimal("0.67")
    assert round_money(Fraction(5, 2), "JPY") == Decimal("2")
    assert round_money(Fraction(12345, 10000), "KWD") == Decimal("1.234")  # 1.2345 -> 1.234
    assert minor_units("eur") == 2


def test_allocation_adds_up_to_the_rounded_total():
    # Three lines of 1/3 each: rounding each gives 0.99, the total is 1.00; the extra cent goes to one line.
    amounts = {"a": Fraction(1, 3), "b": Fraction(1, 3), "c": Fraction(1, 3)}
    lines = allocate(amounts, "USD")
    assert sum(lines.values()) == Decimal("1.00")
    assert sorted(lines.values()) == [Decimal("0.33"), Decimal("0.33"), Decimal("0.34")]
    assert lines["a"] == Decimal("0.34")  # ties go to the earlier key


def test_allocation_gives_leftover_cents_to_the_largest_remainders():
    amounts = {"x": Fraction(1006, 1000), "y": Fraction(2004, 1000), "z": Fraction(3, 1000)}
    # exact total 3.013 -> 3.01; floors 1.00 + 2.00 + 0.00 = 3.00; one cent to the largest remainder (x: 0.6c).
    assert allocate(amounts, "USD") == {"x": Decimal("1.01"), "y": Decimal("2.00"), "z": Decimal("0.00")}


def test_allocation_of_negative_amounts_still_adds_up():
    amounts = {"a": Fraction(-1, 3), "b": Fraction(-1, 3), "c": Fraction(1, 7)}
    lines = allocate(amounts, "USD")
    assert sum(lines.values()) == round_money(sum(amounts.values(), Fraction(0)), "USD")


def test_many_random_lines_always_add_up():
    import random

    rng = random.Random(7)
    for _ in range(200):
        amounts = {
            i: Fraction(rng.randint(0, 10**7), rng.choice([3, 7, 3600, 86400])) for i in range(rng.randint(1, 30))
        }
        lines = allocate(amounts, "USD")
        assert sum(lines.values()) == round_money(sum(amounts.values(), Fraction(0)), "USD")
        for key, value in lines.items():
            assert abs(Fraction(value) - amounts[key]) < Fraction(1, 100)


def test_format_money():
    assert format_money(Fraction(123456789, 100), "USD") == "1,234,567.89 USD"
    assert format_money(Decimal("1234.5"), "JPY") == "1,234 JPY"
    assert format_money(None, "USD") == "—"
