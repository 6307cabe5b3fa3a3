"""Generate a realistic platform with usage history for the dashboards (see apps/dashboards/generate.py).

manage.py dashboards_generate --teams 200 --endpoints 2000 --days 90        # benchmark scale
manage.py dashboards_generate --extend-days 810                             # 10x the history, older
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.dashboards import generate


class Command(BaseCommand):
    help = "Generate teams, endpoints and rollups (hours, days, recent minutes) for the dashboards."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--teams", type=int, default=200)
        parser.add_argument("--endpoints", type=int, default=2000)
        parser.add_argument("--days", type=int, default=90, help="days of hourly and daily history")
        parser.add_argument(
            "--extend-days", type=int, default=0, help="add this many days of older history to existing data instead"
        )
        parser.add_argument(
            "--extend-hour-days",
            type=int,
            help="with --extend-days: hour rows only for the newest this many of them (older days get day rows only)",
        )
        parser.add_argument(
            "--catch-up",
            action="store_true",
            help="bring existing generated data up to now (today's hours and days again, the last two hours' minutes)",
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--prefix", default="", help="prefix for generated names (to generate twice)")
        parser.add_argument("--force", action="store_true", help="run even though the database has teams")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        say = self.stdout.write
        try:
            if options["catch_up"]:
                report = generate.catch_up(seed=options["seed"], say=say)
            elif options["extend_days"]:
                report = generate.extend(
                    days=options["extend_days"], hour_days=options["extend_hour_days"], seed=options["seed"], say=say
                )
            else:
                report = generate.generate(
                    teams=options["teams"],
                    endpoints=options["endpoints"],
                    days=options["days"],
                    seed=options["seed"],
                    force=options["force"],
                    prefix=options["prefix"],
                    say=say,
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        say(f"history {report.first_day}..{report.last_day}")
        say("rows: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
        say("timings: " + ", ".join(f"{k} {v}" for k, v in report.timings.items()))
        say(f"total {time.perf_counter() - started:.1f}s")
