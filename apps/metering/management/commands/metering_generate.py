"""Generate synthetic metering data (teams, endpoints, GPU prices with mid-hour changes, minutes or hours of usage),
optionally with statements, closings and late corrections. See apps/metering/generate.py.

    manage.py metering_generate --teams 4 --endpoints 12 --days 1 --statements      # CI
    manage.py metering_generate --teams 200 --endpoints 2000 --resolution hour       # benchmark scale
"""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.metering import generate, selectors


class Command(BaseCommand):
    help = "Generate synthetic metering data for checks, demos and benchmarks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--teams", type=int, default=4)
        parser.add_argument("--endpoints", type=int, default=12)
        parser.add_argument("--month", help="YYYY-MM, a month that has ended (default: last month)")
        parser.add_argument("--days", type=int, default=1, help="minute resolution: days each side of the month start")
        parser.add_argument("--resolution", choices=["minute", "hour"], default="minute")
        parser.add_argument("--statements", action="store_true", help="also make, close and correct statements")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--prefix", default="gen")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = (
                selectors.parse_month(options["month"])
                if options["month"]
                else selectors.previous_month(selectors.current_month())
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if not selectors.month_ended(month):
            raise CommandError(f"{month:%Y-%m} has not ended yet: statements need a past month")
        if options["teams"] < 1 or options["endpoints"] < 1:
            raise CommandError("--teams and --endpoints must be at least 1")
        started = time.perf_counter()
        try:
            if options["resolution"] == "hour":
                out = generate.generate_hours(
                    teams=options["teams"],
                    endpoints=options["endpoints"],
                    month=month,
                    seed=options["seed"],
                    prefix=options["prefix"],
                )
            else:
                out = generate.generate_minutes(
                    teams=options["teams"],
                    endpoints=options["endpoints"],
                    month=month,
                    days=options["days"],
                    seed=options["seed"],
                    prefix=options["prefix"],
                    statements=options["statements"],
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"generated {len(out.teams)} teams, {len(out.endpoints)} endpoints, {out.minute_rows} minute rows, "
            f"{out.hour_rows} hour rows around {month:%Y-%m} in {time.perf_counter() - started:.1f}s"
        )
        if out.statements:
            self.stdout.write("statements: " + ", ".join(f"{k} {v}" for k, v in out.statements.items()))
