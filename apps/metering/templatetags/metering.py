"""Display helpers: money is rounded here (to the currency's minor unit), never before."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from django import template

from apps.metering.money import format_money

register = template.Library()


@register.filter
def money(value: Decimal | Fraction | int | None, currency: str = "USD") -> str:
    return format_money(value, currency or "USD")


@register.filter
def millis(seconds: float | None) -> str:
    """A latency in seconds as milliseconds: 0.0423 -> "42 ms"; None -> "—"."""
    if seconds is None:
        return "—"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"


@register.filter
def percent(value: float | None, places: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{places}f}%"


@register.filter
def number(value: float | int | None, places: int = 1) -> str:
    return "—" if value is None else f"{value:,.{places}f}"
