"""Benchmark: server time of each dashboard page with 200 teams, 2,000 endpoints and 90 days of rollups, as a ratio
to an empty signed-in page, and again with ten times the history.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        PARETO_SECRET_KEY=x .venv/bin/python benchmarks/dashboards.py \\
        [--teams 200] [--endpoints 2000] [--days 90] [--repeat 30] [--db bench_dash] [--keep-db] [--reuse-db]
        [--skip-extend] [--extend-hour-days N] [--after-db NAME]

Makes a throw-away database `--db` on the server of DATABASE_URL (dropped and created), migrates it and fills it
with `manage.py dashboards_generate`. Then copies it to `<db>_x10` (also dropped and created: PostgreSQL's
`CREATE DATABASE ... TEMPLATE`) and extends the copy's history with `dashboards_generate --extend-days 9 x days`
(days x 10). Both are dropped at the end unless `--keep-db`. `--reuse-db` instead takes a kept `--db` (and
`--after-db`, a kept extended copy), migrates them and brings them up to now with `dashboards_generate --catch-up`
(their newest data is as old as the run that made them).

Hour rows for all of ten times the history would be ~33 M more rows of ~1.8 kB (~60 GB, over an hour to write
here), which this machine cannot hold: `--extend-hour-days` (default 30) of the added days get hour and day rows,
the older ones day rows only. The script prints exactly what each database holds.

Then, in this process, with Django's test client (DEBUG off, plain static files storage as the tests use, no
network), it signs in as each role on each database and requests each page: 3 warm-up requests, one more under a
query counter (the number of SQL queries), then `--repeat` timed requests, round robin over pages and databases
(a database router sends each request's queries to its database, and cache keys get the database's prefix), so
that a busy spell of the machine falls on all of them alike. "Server time" is the wall time of `Client.get`: URL
resolution, middleware, the view, templates, everything but a socket. A query made through the raw
`django.db.connection` is not routed; the script says so where it happens.

The empty page is `accounts:tokens` (the API-token list) for the team lead, who has no tokens: a signed-in page
with the site's chrome, a session, the permission check and a few small queries.

Columns: p50/p95 of wall time; "x empty" = p95 / the empty page's p95 (the goal); queries; "CPU ms" = mean CPU
time per request of this process plus its PostgreSQL backend (from /proc, summed over the timed requests), which
is steadier than wall time on a busy machine, and its ratio to the empty page's; "p95/empty p50" = the page's
p95 over the empty page's p50 (a stricter reading of the goal: the p95 of 30 requests is their second slowest,
and one stall of the machine moves the empty page's). The load average is printed. In the second table,
"after/before p95" is the page's p95 with the longer history over its p95 before (the goal); "p50 after/before"
and "CPU after/before" the same for the median and for mean CPU per request.

Goals (issue 5): p95 of each page at most 5x the empty page's p95; ten times the history less than 1.5x the p95.
Pages whose view still answers 501 are listed as "not built".
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
GOAL_EMPTY = 5.0
GOAL_HISTORY = 1.5


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def recreate_database(server_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    admin = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def copy_database(server_url: str, source: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    admin = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source)))


def switch_default(name: str) -> None:
    """Point the default connection at another database of the same server."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def add_alias(alias: str, name: str) -> None:
    from django.conf import settings
    from django.db import connections

    config = connections["default"].settings_dict.copy()
    config["NAME"] = name
    settings.DATABASES[alias] = config  # type: ignore[assignment]  # the same keys, filled in by Django
    connections.settings[alias] = config


@dataclass
class Page:
    label: str
    role: str
    url: str


@dataclass
class Measured:
    page: Page
    status: int
    error: str = ""
    leaked: str = ""
    queries: int = 0
    times_ms: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0  # mean CPU per request: this process (Django) + its PostgreSQL backend

    @property
    def p50(self) -> float:
        return percentile(self.times_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.times_ms, 95)


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of a local PostgreSQL backend (clock ticks: only sums over many requests mean much)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def catch_up() -> None:
    """A kept database: its newest data is as old as the run that made it; bring it up to now as the worker would
    (today's hours and days made again, the last two hours' minutes) and refresh what the pages precompute."""
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("dashboards_generate", catch_up=True)
    say(f"caught up to now in {time.perf_counter() - started:.1f}s")


def subjects() -> dict[str, Any]:
    """The people and objects the pages are requested for."""
    from django.db.models import Count, Q, Sum

    from apps.accounts.models import User
    from apps.endpoints.models import Endpoint
    from apps.metering.models import UsageDay
    from apps.teams.models import Membership, Team

    live = ~Q(endpoints__state__in=["deleted", "rejected"])
    teams = list(Team.objects.annotate(n=Count("endpoints", filter=live)).order_by("slug"))
    team = min(teams, key=lambda t: (abs(t.n - 10), t.slug))  # a team of about ten endpoints
    lead = Membership.objects.filter(team=team, role=Membership.Role.LEAD).select_related("user").first()
    assert lead is not None, "the generator makes a lead per team"
    latest = UsageDay.objects.order_by("-day").values_list("day", flat=True).first()
    assert latest is not None, "the generator writes day rows"
    busiest = (
        UsageDay.objects.filter(team=team, day=latest, endpoint__state=Endpoint.State.READY)
        .values("endpoint_id")
        .annotate(r=Sum("requests"))
        .order_by("-r")
        .first()
    )
    fallback = Endpoint.objects.filter(team=team).order_by("pk").values_list("pk", flat=True).first()
    endpoint_id = busiest["endpoint_id"] if busiest else fallback
    return {
        "admin": User.objects.filter(is_platform_admin=True).order_by("pk").first(),
        "finance": User.objects.filter(is_finance=True).order_by("pk").first(),
        "lead": lead.user,
        "team": team,
        "team_endpoints": team.n,
        "endpoint_id": endpoint_id,
    }


def pages(s: dict[str, Any]) -> list[Page]:
    from django.urls import reverse

    slug, pk = s["team"].slug, s["endpoint_id"]
    out = [
        Page("empty: accounts:tokens", "lead", reverse("accounts:tokens")),
        Page("dashboards:admin", "admin", reverse("dashboards:admin")),
        Page("dashboards:finance", "finance", reverse("dashboards:finance")),
        Page("dashboards:finance_team", "finance", reverse("dashboards:finance_team", args=[slug])),
        Page("dashboards:finance_endpoint", "finance", reverse("dashboards:finance_endpoint", args=[pk])),
        Page("dashboards:team", "lead", reverse("dashboards:team", args=[slug])),
    ]
    for window in ("1h", "24h", "7d", "30d"):
        out.append(
            Page(
                f"dashboards:endpoint ?window={window}",
                "lead",
                reverse("dashboards:endpoint", args=[pk]) + f"?window={window}",
            )
        )
    out += [
        Page("dashboards:frontier", "lead", reverse("dashboards:frontier")),
        Page("dashboards:frontier", "admin", reverse("dashboards:frontier")),
        Page("core:home", "admin", reverse("core:home")),
        Page("core:home", "finance", reverse("core:home")),
        Page("core:home", "lead", reverse("core:home")),
    ]
    return out


class Route:
    """Database router: every query goes to `Route.alias`, so one process can serve the same pages from two
    databases, request by request."""

    alias = "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return Route.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return Route.alias

    def allow_relation(self, *args: Any, **kwargs: Any) -> bool:
        return True


def use(alias: str) -> None:
    """Route queries, and cache keys, to `alias`'s database (a page's cache must not answer for the other one)."""
    from django.core.cache import caches

    Route.alias = alias
    caches["default"].key_prefix = alias


def measure(page_list: list[Page], users: dict[str, Any], repeat: int, aliases: list[str]) -> dict[str, list[Measured]]:
    """Each page on each database: warm-ups and a query count, then `repeat` timed requests, round robin over the
    pages and databases, so that a busy spell of the machine falls on all of them alike."""
    from django.core.cache import cache
    from django.core.signals import got_request_exception
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    errors: list[str] = []

    def remember(**kwargs: Any) -> None:
        error = sys.exc_info()[1]
        errors.append(f"{type(error).__name__}: {error}")

    cache.clear()  # REDIS_URL's database: nothing cached from another run; the warm-ups fill it
    got_request_exception.connect(remember, weak=False)
    backends, clients = {}, {}
    for alias in aliases:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends[alias] = int(cursor.fetchone()[0])
        use(alias)
        for role, user in users.items():
            client = Client(raise_request_exception=False)  # a broken page is a result, not the end of the run
            client.force_login(user)  # the session lives in this alias's database
            clients[alias, role] = client
    results: dict[str, list[Measured]] = {alias: [] for alias in aliases}
    for page in page_list:
        for alias in aliases:
            use(alias)
            client = clients[alias, page.role]
            status = 0
            for _ in range(3):
                status = client.get(page.url).status_code
            measured = Measured(page, status, error=errors[-1] if status == 500 and errors else "")
            if status == 200:
                others = [CaptureQueriesContext(connections[other]) for other in aliases if other != alias]
                with CaptureQueriesContext(connections[alias]) as queries:
                    for other in others:
                        other.__enter__()
                    client.get(page.url)
                    for other in others:
                        other.__exit__(None, None, None)
                leaked = [q["sql"] for other in others for q in other.captured_queries]
                if leaked:  # raw `django.db.connection` use: not routed, so it reads the first database
                    measured.leaked = f"{len(leaked)} query not routed (raw connection): {leaked[0][:70]}"
                measured.queries = len(queries.captured_queries) + len(leaked)
            results[alias].append(measured)
    timed = [
        (alias, m) for page_index in range(len(page_list)) for alias in aliases for m in [results[alias][page_index]]
    ]
    timed = [(alias, m) for alias, m in timed if m.status == 200]
    cpu_seconds = [0.0] * len(timed)
    for _ in range(repeat):
        for index, (alias, measured) in enumerate(timed):
            use(alias)
            client = clients[alias, measured.page.role]
            cpu = time.process_time() + backend_cpu(backends[alias])
            started = time.perf_counter()
            client.get(measured.page.url)
            measured.times_ms.append((time.perf_counter() - started) * 1000)
            cpu_seconds[index] += time.process_time() + backend_cpu(backends[alias]) - cpu
    for index, (_, measured) in enumerate(timed):
        measured.cpu_ms = cpu_seconds[index] * 1000 / repeat
    got_request_exception.disconnect(remember)
    use("default")
    return results


def table(results: list[Measured], before: list[Measured] | None = None) -> list[str]:
    empty = results[0]
    lines = [
        f"{'page':40} {'role':8} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'x empty':>8} {'goal':>5} {'queries':>8}"
        f" {'CPU ms':>7} {'x empty':>8} {'p95/empty p50':>14}"
        + (f" {'after/before p95':>17} {'goal':>5} {'p50 after/before':>17} {'CPU after/before':>17}" if before else "")
    ]
    for index, m in enumerate(results):
        name = f"{m.page.label:40} {m.page.role:8} {m.status:>6}"
        if m.status == 501:
            lines.append(f"{name}  not built")
            continue
        if m.status != 200:
            lines.append(f"{name}  error{': ' + m.error[:100] if m.error else ''}")
            continue
        ratio = m.p95 / empty.p95
        ok = "ok" if index == 0 or ratio <= GOAL_EMPTY else "MISS"
        line = f"{name} {m.p50:8.1f} {m.p95:8.1f} {ratio:8.1f} {ok:>5} {m.queries:8d}"
        line += f" {m.cpu_ms:7.1f} {m.cpu_ms / empty.cpu_ms if empty.cpu_ms else 0:8.1f} {m.p95 / empty.p50:14.1f}"
        if before:
            earlier = before[index]
            if earlier.status == 200:
                growth = m.p95 / earlier.p95
                line += f" {growth:17.2f} {'ok' if growth < GOAL_HISTORY else 'MISS':>5}"
                line += f" {m.p50 / earlier.p50:17.2f}"
                line += f" {m.cpu_ms / earlier.cpu_ms if earlier.cpu_ms else 0:17.2f}"
            else:
                line += f" {'(no before)':>17}"
        lines.append(line)
    return lines


def database_facts() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM metering_usagehour), (SELECT count(*) FROM metering_usageday),"
            " (SELECT count(*) FROM metering_usageminute), (SELECT min(day) FROM metering_usageday),"
            " (SELECT max(day) FROM metering_usageday), (SELECT min(hour) FROM metering_usagehour),"
            " (SELECT max(hour) FROM metering_usagehour), pg_size_pretty(pg_database_size(current_database()))"
        )
        hours, days, minutes, first_day, last_day, first_hour, last_hour, size = cursor.fetchone()
    return {
        "hour_rows": hours,
        "day_rows": days,
        "minute_rows": minutes,
        "days": f"{first_day}..{last_day}",
        "hours_from": f"{first_hour:%Y-%m-%d}" if first_hour else "-",
        "db_size": size,
        "day_span": (last_day - first_day).days + 1 if first_day else 0,
        "hour_span": round((last_hour - first_hour).total_seconds() / 86400, 1) if first_hour else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--db", default="bench_dash", help="name of the throw-away database")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--reuse-db", action="store_true", help="measure an existing generated --db (no generation)")
    parser.add_argument("--skip-extend", action="store_true", help="measure the first history only")
    parser.add_argument("--extend-hour-days", type=int, default=30, help="added days that also get hour rows")
    parser.add_argument("--after-db", help="with --reuse-db: a kept, extended copy of --db to compare with")
    args = parser.parse_args()

    server_url = os.environ["DATABASE_URL"]
    if args.reuse_db:
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(server_url)._replace(path=f"/{args.db}"))
    else:
        os.environ["DATABASE_URL"] = recreate_database(server_url, args.db)
    os.environ.setdefault("PARETO_HTTPS", "false")  # the test client speaks plain HTTP
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.test.utils import setup_test_environment

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic here
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # page errors are reported in the table
    setup_test_environment(debug=False)  # allows the test client's host; DEBUG stays off
    from django.db import router

    settings.DATABASE_ROUTERS = [Route()]
    router.__dict__.pop("routers", None)  # read again from the settings
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    try:
        started = time.perf_counter()
        call_command("migrate", verbosity=0)  # a kept database gets migrations added since it was made
        say(f"migrated in {time.perf_counter() - started:.1f}s")
        if not args.reuse_db:
            started = time.perf_counter()
            call_command(
                "dashboards_generate", teams=args.teams, endpoints=args.endpoints, days=args.days, seed=1, force=False
            )
            say(f"generated in {time.perf_counter() - started:.1f}s")
        else:
            catch_up()
        facts = database_facts()
        s = subjects()
        users = {"admin": s["admin"], "finance": s["finance"], "lead": s["lead"]}
        page_list = pages(s)
        say(
            f"first database ({args.db}): {facts['hour_rows']} hour rows (from {facts['hours_from']}), "
            f"{facts['day_rows']} day rows ({facts['days']}), {facts['minute_rows']} minute rows; "
            f"database {facts['db_size']}"
        )
        after_db = args.after_db or f"{args.db}_x10"
        aliases = ["default"]
        if not args.skip_extend:
            if not args.after_db:
                # The second database is a copy of the first, extended: both are measured in the same round robin.
                connections.close_all()
                copy_database(server_url, args.db, after_db)
            switch_default(after_db)
            if args.after_db:
                call_command("migrate", verbosity=0)
                catch_up()
            else:
                extra = args.days * 9
                started = time.perf_counter()
                call_command(
                    "dashboards_generate", extend_days=extra, extend_hour_days=min(args.extend_hour_days, extra), seed=1
                )
                say(f"extended the copy's history by {extra} days in {time.perf_counter() - started:.1f}s")
            after_facts = database_facts()
            switch_default(args.db)
            add_alias("after", after_db)
            aliases.append("after")
            say(
                f"second database ({after_db}): day rows {facts['day_rows']} -> {after_facts['day_rows']} (daily "
                f"rollups {facts['day_span']} -> {after_facts['day_span']} days: "
                f"x{after_facts['day_span'] / facts['day_span']:.1f}, {after_facts['days']}); hour rows "
                f"{facts['hour_rows']} -> {after_facts['hour_rows']} (hourly rollups {facts['hour_span']} -> "
                f"{after_facts['hour_span']} days: x{after_facts['hour_span'] / facts['hour_span']:.1f}); minute rows "
                f"{after_facts['minute_rows']} (kept 14 days whatever the history); database {after_facts['db_size']}"
            )
        say(
            f"lead of {s['team'].slug} ({s['team_endpoints']} live endpoints), endpoint pages for endpoint "
            f"{s['endpoint_id']}; empty page = accounts:tokens as that lead (no tokens); {args.repeat} timed "
            f"requests per page and database after 3 warm-ups; load average {os.getloadavg()[0]:.2f}"
        )
        results = measure(page_list, users, args.repeat, aliases)
        say(f"load average after measuring {os.getloadavg()[0]:.2f}")
        before = results["default"]
        say(f"with {args.days} days of history ({args.db}):")
        print("\n".join(table(before)), flush=True)
        built = [m for m in before if m.status == 200][1:]
        say(
            f"goal p95 <= {GOAL_EMPTY:g}x empty page: {sum(m.p95 <= GOAL_EMPTY * before[0].p95 for m in built)} of "
            f"{len(built)} built pages meet it; not built: "
            + (", ".join(sorted({m.page.label for m in before if m.status == 501})) or "none")
        )
        if args.skip_extend:
            return
        after = results["after"]
        say(f"with the longer history ({after_db}), measured in the same round robin:")
        print("\n".join(table(after, before)), flush=True)
        for note in sorted({f"{m.page.label} ({m.page.role}): {m.leaked}" for m in after if m.leaked}):
            say(f"note: {note}; it went to the first database in both columns")
        compared = [(b, a) for b, a in zip(before[1:], after[1:], strict=True) if b.status == a.status == 200]
        say(
            f"goal after/before p95 < {GOAL_HISTORY:g}: {sum(a.p95 / b.p95 < GOAL_HISTORY for b, a in compared)} of "
            f"{len(compared)} built pages meet it; CPU after/before < {GOAL_HISTORY:g}: "
            f"{sum(a.cpu_ms / b.cpu_ms < GOAL_HISTORY for b, a in compared if b.cpu_ms)} of {len(compared)}"
        )
    finally:
        if not args.keep_db and not args.reuse_db:
            connections.close_all()
            drop_database(server_url, args.db)
            if not args.after_db:
                drop_database(server_url, f"{args.db}_x10")


if __name__ == "__main__":
    main()
