"""Benchmark: building a month's chargeback statements for 200 teams and 2,000 endpoints.

    DATABASE_URL=... REDIS_URL=... PARETO_SECRET_KEY=x .venv/bin/python benchmarks/metering_statements.py \
        [--teams 200] [--endpoints 2000]

On a throw-away test database: `metering_generate --resolution hour` writes a whole month of hourly rows (split at
the mid-hour price changes) and rolls them up into days with the real daily rollup; then the month's statements are
generated (timed), generated again (timed: regenerating open statements rewrites every line), and
`metering_check` verifies that each statement adds up to the metered cost to the cent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from metering_common import django_setup, test_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--month", default="2026-09")
    args = parser.parse_args()
    django_setup()
    from apps.audit.services import Actor
    from apps.metering import generate, selectors
    from apps.metering.checks import run_checks
    from apps.metering.models import StatementLine, UsageDay, UsageHour
    from apps.metering.services import statements_generate

    month = selectors.parse_month(args.month)
    result: dict[str, object] = {"teams": args.teams, "endpoints": args.endpoints, "month": args.month}
    with test_database():
        started = time.perf_counter()
        generate.generate_hours(teams=args.teams, endpoints=args.endpoints, month=month, seed=1, prefix="bench")
        result["generate_and_daily_rollup_s"] = round(time.perf_counter() - started, 1)
        result["hour_rows"] = UsageHour.objects.count()
        result["day_rows"] = UsageDay.objects.count()
        now = selectors.month_bounds(month)[1] + dt.timedelta(days=1)
        for label in ("first_generation_s", "regeneration_s"):
            started = time.perf_counter()
            report = statements_generate(actor=Actor.system(), month=month, now=now)
            result[label] = round(time.perf_counter() - started, 2)
        result["statements"] = len(report.written)
        result["lines"] = StatementLine.objects.count()
        started = time.perf_counter()
        check = run_checks([month], minutes=False)
        result["metering_check_s"] = round(time.perf_counter() - started, 2)
        result["check_ok"] = check.ok
        result["problems"] = check.problems[:5]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
