"""Versioned price table: model -> dollars per million input / output tokens, from a given date.

Prices are OpenAI's published list prices. Local models and extractive answers cost nothing.
Add a new `ModelPrice` row (never edit an old one) when a price changes, so old query costs stay right.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

log = logging.getLogger(__name__)
PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    effective: date
    input_per_million: Decimal
    output_per_million: Decimal


def _p(day: str, input_price: str, output_price: str = "0") -> ModelPrice:
    return ModelPrice(date.fromisoformat(day), Decimal(input_price), Decimal(output_price))


PRICE_TABLE: dict[str, list[ModelPrice]] = {
    "gpt-4o-mini": [_p("2024-07-18", "0.15", "0.60")],
    "gpt-4o": [_p("2024-05-13", "5.00", "15.00"), _p("2024-10-02", "2.50", "10.00")],
    "gpt-4.1": [_p("2025-04-14", "2.00", "8.00")],
    "gpt-4.1-mini": [_p("2025-04-14", "0.40", "1.60")],
    "gpt-4.1-nano": [_p("2025-04-14", "0.10", "0.40")],
    "text-embedding-3-small": [_p("2024-01-25", "0.02")],
    "text-embedding-3-large": [_p("2024-01-25", "0.13")],
    "all-MiniLM-L6-v2": [_p("2020-01-01", "0")],
    "extractive": [_p("2020-01-01", "0")],
}


class UnknownModelPrice(KeyError):
    """No price is known for this model on this date."""


def price_on(model: str, day: date) -> ModelPrice:
    rows = [row for row in PRICE_TABLE.get(model, []) if row.effective <= day]
    if not rows:
        raise UnknownModelPrice(f"no price for model {model!r} on {day.isoformat()}; add it to app/core/pricing.py")
    return max(rows, key=lambda row: row.effective)


def cost_usd(model: str, *, input_tokens: int, output_tokens: int = 0, day: date | None = None) -> Decimal:
    """Dollar cost of one call. An unpriced model costs 0 and is logged, so a query never fails on price."""
    try:
        price = price_on(model, day or date.today())
    except UnknownModelPrice as exc:
        log.warning("%s", exc)
        return Decimal(0)
    return (Decimal(input_tokens) * price.input_per_million + Decimal(output_tokens) * price.output_per_million) / PER_MILLION
