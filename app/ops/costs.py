"""Cost arithmetic: month to date, projection and flags against the budget. No I/O."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


@dataclass(frozen=True)
class CostSummary:
    as_of: date
    today_usd: Decimal
    month_to_date_usd: Decimal
    projected_month_usd: Decimal
    variable_month_to_date_usd: Decimal
    fixed_month_usd: Decimal
    queries_month_to_date: int
    cost_per_query_mean_usd: Decimal
    cost_per_query_p95_usd: Decimal
    budget_usd: Decimal
    per_query_target_usd: Decimal

    @property
    def over_budget(self) -> bool:
        return self.projected_month_usd > self.budget_usd

    @property
    def over_per_query_target(self) -> bool:
        return self.cost_per_query_mean_usd > self.per_query_target_usd

    @property
    def alerts(self) -> list[str]:
        alerts = []
        if self.over_budget:
            alerts.append(f"projected month end ${cents(self.projected_month_usd)} is over the budget "
                          f"${cents(self.budget_usd)}")
        if self.over_per_query_target:
            alerts.append(f"mean cost per query ${self.cost_per_query_mean_usd:.5f} is over the target "
                          f"${self.per_query_target_usd:.5f}")
        return alerts


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def summarize_costs(*, as_of: date, daily: list[dict[str, Any]], queries: int, mean: Decimal, p95: Decimal,
                    fixed_monthly: Decimal, budget: Decimal, per_query_target: Decimal) -> CostSummary:
    """Fixed costs accrue evenly over the month; variable costs are projected at the month-to-date daily rate."""
    days_in_month = calendar.monthrange(as_of.year, as_of.month)[1]
    elapsed = as_of.day
    variable_mtd = sum((Decimal(row["variable_cost_usd"] or 0) for row in daily), Decimal(0))
    variable_today = sum((Decimal(row["variable_cost_usd"] or 0) for row in daily if row["day"] == as_of), Decimal(0))
    fixed_daily = fixed_monthly / days_in_month
    return CostSummary(
        as_of=as_of,
        today_usd=variable_today + fixed_daily,
        month_to_date_usd=variable_mtd + fixed_daily * elapsed,
        projected_month_usd=variable_mtd / elapsed * days_in_month + fixed_monthly,
        variable_month_to_date_usd=variable_mtd,
        fixed_month_usd=fixed_monthly,
        queries_month_to_date=queries,
        cost_per_query_mean_usd=mean,
        cost_per_query_p95_usd=p95,
        budget_usd=budget,
        per_query_target_usd=per_query_target,
    )
