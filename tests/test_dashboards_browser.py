"""The dashboards in a real browser: Chromium (Debian's, through Playwright) against Pareto's live server.

Each person signs in through the local sign-in form and opens their home page and every dashboard they may open.
On each page: every plot is drawn (`data-drawn`, set by static/js/charts.js) with real SVG marks and the figure data
that plotly.js attached to the element; nothing is fetched from another host (plotly.js is ours); the console has
no errors; at phone width nothing overflows sideways. Pickers (window, month) redraw the figures through htmx
without a reload and put the choice in the URL. CSV links download the same rows as the table under the chart,
and the numbers match the seeded world (tests/dashboards_seed.py).

Screenshots (1280x800 and 390x844) go to test-output/screenshots/ at the repository root (ignored by git).

Django's ORM refuses to run while Playwright's event loop runs in the thread, so each test computes what it
expects before it starts the browser (one per test, about half a second).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, ViewportSize, sync_playwright

from apps.core.charts import WINDOWS
from apps.metering.models import UsageDay, UsageHour, UsageMinute
from apps.metering.rollup import local_day
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.dashboards_seed import PASSWORD, World, seed_world

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
VIEWS = {
    "dashboards:team": "apps/dashboards/views/team.py team_dashboard",
    "dashboards:endpoint": "apps/dashboards/views/team.py endpoint_panel",
    "dashboards:finance": "apps/dashboards/views/finance.py finance_dashboard",
    "dashboards:finance_team": "apps/dashboards/views/finance.py finance_team",
    "dashboards:finance_endpoint": "apps/dashboards/views/finance.py finance_endpoint",
    "dashboards:admin": "apps/dashboards/views/admin.py admin_dashboard",
    "dashboards:frontier": "apps/dashboards/views/frontier.py frontier",
    "core:home": "apps/core/views.py home",
}
METERED = ("chat-a", "code-a", "embed-b")

# Every plot on the page, as plotly.js holds it: the traces (el.data), the layout, and the SVG marks it drew.
PLOTS_JS = """
() => [...document.querySelectorAll('.chart-plot')].map((el) => {
  const figure = el.closest('figure.chart');
  const marks = [...el.querySelectorAll(
    '.barlayer .point path, .scatterlayer .trace path, .boxlayer .trace path, .pielayer path.surface'
  )].filter((p) => { const d = p.getAttribute('d'); return d && d !== 'M0,0Z' && d !== 'M0,0'; }).length;
  const traces = (el.data || []).map((t) => {
    const length = (v) => (v && typeof v.length === 'number' ? v.length : 0);
    return {
      type: t.type || 'scatter',
      mode: t.mode || '',
      name: t.name || '',
      n: Math.max(length(t.x), length(t.y), length(t.values)),
      x: Array.from(t.x || []),
      y: Array.from(t.y || []),
      labels: [t.name, t.text, t.hovertext, t.customdata, t.labels]
        .flat(3).filter((v) => v !== undefined && v !== null).map(String),
      markerSize: t.marker && t.marker.size !== undefined ? t.marker.size : null,
    };
  });
  return {
    key: figure ? figure.dataset.chart : '',
    id: figure ? figure.id : '',
    title: figure ? (figure.querySelector('h3') || {}).textContent : '',
    drawn: Number(el.dataset.drawn || 0),
    marks: marks,
    barmode: (el.layout && el.layout.barmode) || '',
    traces: traces,
  };
})
"""
ALL_DRAWN_JS = """
() => {
  const plots = [...document.querySelectorAll('.chart-plot')];
  return plots.length > 0 && plots.every((el) => el.dataset.drawn &&
    (!('before' in el.dataset) || Number(el.dataset.drawn) > Number(el.dataset.before)));
}
"""
# Before a picker changes: remember each plot's draw count, and set a marker that a full reload would lose.
MARK_JS = """
() => {
  window.__noReload = 1;
  document.querySelectorAll('.chart-plot').forEach((el) => { el.dataset.before = el.dataset.drawn || '0'; });
}
"""
OWN_PLOTLY_JS = """
() => ({
  plotly: typeof window.Plotly === 'object' && typeof window.Plotly.react === 'function',
  scripts: [...document.querySelectorAll('script[src]')].map((s) => s.src),
  resources: performance.getEntriesByType('resource').map((e) => e.name),
})
"""
# At phone width: how wide the document is, and the elements that stick out past the viewport without a
# scrolling box that clips them (an absolutely positioned element escapes an overflow box that is not positioned).
OVERFLOW_JS = """
() => {
  const width = window.innerWidth;
  const clipped = (el) => {
    let free = ['absolute', 'fixed'].includes(getComputedStyle(el).position);
    for (let a = el.parentElement; a; a = a.parentElement) {
      const style = getComputedStyle(a);
      if (free && style.position !== 'static') free = false;
      if (!free && style.overflowX !== 'visible' && a.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const wide = [...document.querySelectorAll('body *')]
    .filter((el) => !(el instanceof SVGElement) && el.getBoundingClientRect().right > width + 1 && !clipped(el))
    .slice(0, 8)
    .map((el) => `${name(el)} in ${name(el.parentElement)} (right ${Math.round(el.getBoundingClientRect().right)})`);
  return {scroll: document.documentElement.scrollWidth, inner: width, wide: wide};
}
"""


# --- expectations (computed before the browser starts) --------------------------------------------
@dataclass(frozen=True)
class Expect:
    now_month: str  # YYYY-MM
    last_month: str
    team_a_month: Decimal  # month-to-date cost of team A
    team_a_last_month: Decimal
    team_b_month: Decimal
    endpoint_pk: dict[str, int]
    day: str  # a whole day of this month (yesterday, or today on the 1st) ...
    chat_day_cost: Decimal  # ... and chat-a's cost that day
    # (endpoint name, window) -> the possible (hourly rows, rows with traffic) in the window: for the window
    # now, and an hour later in case the clock passes an hour while the test runs.
    hours: dict[tuple[str, str], set[tuple[int, int]]]


def hour_counts(world: World) -> dict[tuple[str, str], set[tuple[int, int]]]:
    out: dict[tuple[str, str], set[tuple[int, int]]] = {}
    now = timezone.now()
    for name, endpoint in world.endpoints.items():
        for key in ("24h", "7d"):
            options = set()
            for moment in (now, now + dt.timedelta(hours=1)):
                start, end = WINDOWS[key].bounds(moment)
                rows = UsageHour.objects.filter(endpoint=endpoint, hour__gte=start, hour__lt=end)
                options.add((rows.count(), rows.filter(requests__gt=0).count()))
            out[(name, key)] = options
    return out


def expectations(world: World) -> Expect:
    today = local_day(world.now)
    day = today - dt.timedelta(days=1) if today.day > 1 else today
    return Expect(
        day=day.isoformat(),
        chat_day_cost=world.endpoint_day_costs(world.endpoints["chat-a"])[day],
        hours=hour_counts(world),
        now_month=f"{world.month:%Y-%m}",
        last_month=f"{world.last_month:%Y-%m}",
        team_a_month=world.team_cost(world.team_a, world.month),
        team_a_last_month=world.team_cost(world.team_a, world.last_month),
        team_b_month=world.team_cost(world.team_b, world.month),
        endpoint_pk={name: e.pk for name, e in world.endpoints.items()} | {"rerank-b": world.pending.pk},
    )


# --- the browser ------------------------------------------------------------------------------------
@dataclass
class Session:
    """One signed-in person in their own browser context, with what the pages logged and fetched."""

    page: Page
    base: str
    who: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def url(self, name: str, *args: Any) -> str:
        return f"{self.base}{reverse(name, args=args)}"


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Browser, base: str, username: str) -> Session:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    session = Session(page=page, base=base, who=username)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            session.errors.append(f"console error on {page.url}: {message.text} ({message.location.get('url')})")

    def on_request(request: Request) -> None:
        session.requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: session.errors.append(f"page error on {page.url}: {error}"))
    page.on("request", on_request)
    page.goto(f"{base}/login/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login/" not in url)
    return session


def switch_user(session: Session, username: str) -> Session:
    """Sign out and in again as someone else in the same browser context (its cache keeps plotly.js compiled)."""
    page = session.page
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda url: "/login/" in url)
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login/" not in url)
    session.who = username
    return session


def plots(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(PLOTS_JS)  # type: ignore[no-any-return]


def check_page(session: Session, url: str, shot: str, view: str) -> list[dict[str, Any]]:
    """Open a dashboard, check every plot drew data, that nothing came from elsewhere, no console errors, and
    the phone layout; save both screenshots. Returns the plots."""
    page = session.page
    page.set_viewport_size(DESKTOP)
    response = page.goto(url)
    assert response is not None
    if response.status == 501:
        pytest.fail(f"{url} answered 501: the view {VIEWS[view]} is not written yet")
    assert response.status == 200, f"{url} answered {response.status} for {session.who}"
    page.wait_for_function(ALL_DRAWN_JS)
    drawn = plots(page)
    assert drawn, f"{url}: no .chart-plot on the page"
    for plot in drawn:
        points = sum(t["n"] for t in plot["traces"])
        assert plot["traces"] and points > 0, f"{url}: chart {plot['key']!r} has no data in its figure"
        assert plot["marks"] > 0, f"{url}: chart {plot['key']!r} drew no SVG marks ({points} points in its data)"
    own_origin(session)
    page.screenshot(path=str(SCREENSHOTS / f"{shot}-desktop.png"))

    page.set_viewport_size(PHONE)
    page.wait_for_timeout(400)  # plotly.js relayouts responsive plots after the resize event
    width = page.evaluate(OVERFLOW_JS)
    assert width["scroll"] <= width["inner"] + 1, f"{url} overflows at phone width: {width}"
    page.screenshot(path=str(SCREENSHOTS / f"{shot}-phone.png"))
    page.set_viewport_size(DESKTOP)
    assert not session.errors, "\n".join(session.errors)
    return drawn


def own_origin(session: Session) -> None:
    """plotly.js (and everything else) comes from our own origin."""
    origin = urlsplit(session.base).netloc
    foreign = [u for u in session.requests if u.startswith("http") and urlsplit(u).netloc != origin]
    assert not foreign, f"requests to other hosts: {foreign}"
    found = session.page.evaluate(OWN_PLOTLY_JS)
    assert found["plotly"], "window.Plotly is missing"
    plotly = [u for u in found["scripts"] + found["resources"] if "plotly" in u]
    assert plotly, "no plotly.js script on the page"
    assert all(urlsplit(u).netloc == origin for u in plotly), plotly


def change(session: Session, act: Callable[[], None], param: str, value: str) -> list[dict[str, Any]]:
    """Use a picker; the plots are redrawn in place (no reload) and the URL carries the choice."""
    page = session.page
    page.evaluate(MARK_JS)
    act()
    page.wait_for_function(
        "([p, v]) => new URLSearchParams(location.search).get(p) === v", arg=[param, value], timeout=15_000
    )
    page.wait_for_function(ALL_DRAWN_JS)
    assert page.evaluate("() => window.__noReload") == 1, "the picker reloaded the whole page"
    assert parse_qs(urlsplit(page.url).query).get(param) == [value]
    redrawn = plots(page)
    for plot in redrawn:
        assert plot["marks"] > 0, f"after {param}={value}: chart {plot['key']!r} drew no marks"
    assert not session.errors, "\n".join(session.errors)
    return redrawn


def pick_window(session: Session, value: str) -> list[dict[str, Any]]:
    choice = session.page.locator(f"input[name=window][value='{value}']")
    assert choice.count() == 1, f"{session.page.url}: no window picker input[name=window][value={value}]"
    assert not choice.is_checked(), f"{session.page.url}: the window {value} is shown already"
    return change(session, lambda: choice.first.click(), "window", value)


def pick_month(session: Session, value: str) -> list[dict[str, Any]]:
    field_ = session.page.locator("input[name=month]")
    assert field_.count() >= 1, f"{session.page.url}: no month picker input[name=month]"
    kind = field_.first.get_attribute("type") or "text"
    if kind in ("radio", "checkbox"):
        option = session.page.locator(f"input[name=month][value='{value}']")
        return change(session, lambda: option.first.click(), "month", value)
    if kind == "month":
        return change(session, lambda: field_.first.fill(value), "month", value)

    def type_it() -> None:
        field_.first.fill(value)
        field_.first.press("Enter")

    return change(session, type_it, "month", value)


# --- CSV ----------------------------------------------------------------------------------------------
@dataclass
class Download:
    key: str
    filename: str
    rows: list[list[str]]  # header first

    @property
    def header(self) -> list[str]:
        return self.rows[0]

    @property
    def body(self) -> list[list[str]]:
        return self.rows[1:]


def download_csvs(session: Session) -> list[Download]:
    """Click every chart's CSV link; each file has the chart's table (header and rows) when one is shown."""
    page = session.page
    out = []
    links = page.locator("figure.chart a.chart-csv")
    assert links.count() > 0, f"{page.url}: no CSV link (a.chart-csv)"
    for i in range(links.count()):
        link = links.nth(i)
        figure = link.locator("xpath=ancestor::figure[1]")
        key = figure.get_attribute("data-chart") or ""
        with page.expect_download() as info:
            link.click()
        download = info.value
        text = Path(download.path()).read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows and rows[0], f"chart {key!r}: empty CSV"
        assert download.suggested_filename.endswith(".csv"), download.suggested_filename
        assert key in download.suggested_filename, (key, download.suggested_filename)
        table = figure.locator("details.chart-table table")
        if table.count():
            header = [t.strip() for t in table.locator("thead th").all_text_contents()]
            assert rows[0] == header, f"chart {key!r}: CSV header {rows[0]} != table header {header}"
            body = [[c.strip() for c in tr.locator("td").all_text_contents()] for tr in table.locator("tbody tr").all()]
            assert same_rows(rows[1:], body), f"chart {key!r}: CSV rows {rows[1:]} != table rows {body}"
        out.append(Download(key=key, filename=download.suggested_filename, rows=rows))
    assert page.evaluate("() => window.__noReload") in (1, None)
    assert not session.errors, "\n".join(session.errors)
    return out


def same_rows(csv_rows: list[list[str]], table_rows: list[list[str]]) -> bool:
    """The CSV holds the table's rows. The download is a second request a moment later, and a forecast moves
    with the clock (the spend rate times the time left in the month), so a number may differ by a cent."""
    if len(csv_rows) != len(table_rows):
        return False
    for csv_row, table_row in zip(csv_rows, table_rows, strict=True):
        if len(csv_row) != len(table_row):
            return False
        for a, b in zip(csv_row, table_row, strict=True):
            a, b = a.strip(), b.strip()
            if a == b:
                continue
            try:
                if abs(Decimal(a) - Decimal(b)) > Decimal("0.01"):
                    return False
            except ArithmeticError:
                return False
    return True


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def numbers(cell: str) -> list[Decimal]:
    return [Decimal(m.replace(",", "")) for m in _NUMBER.findall(cell)]


def has_amount(downloads: list[Download], amount: Decimal, *, label: tuple[str, ...] = ()) -> bool:
    """Some row (mentioning one of `label`, if given) holds `amount` to the cent."""
    for download in downloads:
        for row in download.body:
            if label and not any(any(lbl in cell for lbl in label) for cell in row):
                continue
            if any(abs(n - amount) <= Decimal("0.01") for cell in row for n in numbers(cell)):
                return True
    return False


def named_endpoints(texts: list[str]) -> set[str]:
    return {name for name in (*METERED, "rerank-b") if any(name in t for t in texts)}


# --- the frontier -------------------------------------------------------------------------------------
def frontier_points(drawn: list[dict[str, Any]]) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """The scatter (a plot with marker traces) and its distinct (x, y) points: the frontier line only joins
    points that are also endpoints, so distinct points = endpoints drawn."""
    scatters = [p for p in drawn if any("markers" in t["mode"] for t in p["traces"])]
    assert scatters, f"no scatter with markers on the frontier: {[p['key'] for p in drawn]}"
    plot = scatters[0]
    points = {
        (json.dumps(x), json.dumps(y))
        for t in plot["traces"]
        for x, y in zip(t["x"], t["y"], strict=False)
        if x is not None and y is not None
    }
    return plot, points


def check_frontier(session: Session, visible: set[str], shot: str) -> None:
    page = session.page
    drawn = check_page(session, session.url("dashboards:frontier"), shot, "dashboards:frontier")
    plot, points = frontier_points(drawn)
    assert len(points) == len(visible), f"{session.who}: {len(points)} endpoints on the frontier, want {visible}"
    labels = [label for t in plot["traces"] for label in t["labels"]]
    assert named_endpoints(labels) >= visible, f"{session.who}: frontier names {named_endpoints(labels)}"
    hidden = set(METERED) - visible
    content = page.content()
    assert not {name for name in hidden if name in content}, f"{session.who} sees another team's endpoint"
    downloads = download_csvs(session)
    mentioned = named_endpoints([cell for d in downloads for row in d.body for cell in row])
    assert visible <= mentioned and not (mentioned & hidden), (visible, mentioned)

    before = json.dumps(plot["traces"])
    after = pick_window(session, "24h")  # the frontier shows 7 days unless asked
    plot_after, points_after = frontier_points(after)
    assert len(points_after) == len(visible)
    assert json.dumps(plot_after["traces"]) != before, "the frontier did not change with the window"
    hidden_now = {name for name in hidden if name in page.content()}
    assert not hidden_now, hidden_now


def home_is(session: Session, expected_url: str, shot: str) -> None:
    """`/` shows the person's main dashboard: its tab is the current one."""
    check_page(session, f"{session.base}/", shot, "core:home")
    current = session.page.locator("ul.tabs a[aria-current=page]")
    assert current.count() == 1, f"{session.who}: the home page shows no dashboard tab as current"
    href = current.get_attribute("href") or ""
    assert urlsplit(session.base + href).path == urlsplit(expected_url).path, (session.who, href, expected_url)


def check_hour_series(drawn: list[dict[str, Any]], options: set[tuple[int, int]], where: str) -> None:
    """An endpoint's hourly charts have a point per hourly row of the window (request rate, replicas) and the
    latency lines one per hour with traffic (idle hours have no latency)."""
    lengths = {t["n"] for p in drawn for t in p["traces"]}
    assert any(max(lengths) == rows and busy in lengths for rows, busy in options), (
        f"{where}: trace lengths {sorted(lengths)}, want (hourly rows, hours with traffic) in {options}"
    )


def total_points(drawn: list[dict[str, Any]]) -> int:
    return sum(t["n"] for p in drawn for t in p["traces"])


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def world(live_server, settings) -> World:  # type: ignore[no-untyped-def]
    settings.SECURE_SSL_REDIRECT = False  # the live server speaks plain http
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.PARETO_AUTH_MODES = ["local"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return seed_world()


# --- tests --------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_seeded_world_agrees_from_minutes_to_statements() -> None:
    """The seed itself: minutes, hours, days and last month's statements tell the same story."""
    world = seed_world()
    assert UsageMinute.objects.filter(minute__gte=world.now.replace(minute=0, second=0, microsecond=0)).exists()
    for endpoint in world.endpoints.values():
        hours = UsageHour.objects.filter(endpoint=endpoint)
        days = UsageDay.objects.filter(endpoint=endpoint)
        for column in ("price_seconds", "gpu_seconds", "requests", "prompt_tokens"):
            assert sum(hours.values_list(column, flat=True)) == sum(days.values_list(column, flat=True)), column
        assert hours.filter(hour__gte=world.now.replace(minute=0, second=0, microsecond=0)).exists()
    totals = {s.team.slug: (s.total, s.status) for s in world.statements}
    assert totals["team-a"] == (world.team_cost(world.team_a, world.last_month), "open")
    assert totals["team-b"][1] == "closed"
    assert world.visible_endpoint_names("lead-a") == {"chat-a", "code-a"}
    assert world.visible_endpoint_names("lead-b") == {"embed-b"}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_lead_sees_own_team_changes_window_and_exports_csv(world: World, live_server) -> None:  # type: ignore[no-untyped-def]
    expect = expectations(world)
    chat, embed = expect.endpoint_pk["chat-a"], expect.endpoint_pk["embed-b"]
    with chromium() as browser:
        lead = sign_in(browser, live_server.url, "lead-a")
        team_url = lead.url("dashboards:team", "team-a")
        home_is(lead, team_url, "lead-a-home")

        drawn = check_page(lead, team_url, "lead-a-team", "dashboards:team")
        content = lead.page.content()
        assert "chat-a" in content and "code-a" in content and "embed-b" not in content
        shown = lead.page.locator("tr[aria-current=true] td a").first.inner_text().strip()
        check_hour_series(drawn, expect.hours[(shown, "24h")], f"team page, {shown}, 24 hours")
        downloads = download_csvs(lead)
        assert has_amount(downloads, expect.team_a_month), (
            f"no CSV of the team page holds team A's month-to-date cost {expect.team_a_month}"
        )
        before = total_points(drawn)
        after = pick_window(lead, "7d")
        assert total_points(after) > before, f"7 days drew no more points than 24 hours ({before})"
        check_hour_series(after, expect.hours[(shown, "7d")], f"team page, {shown}, 7 days")
        assert "embed-b" not in lead.page.content()

        drawn = check_page(lead, lead.url("dashboards:endpoint", chat), "lead-a-endpoint", "dashboards:endpoint")
        check_hour_series(drawn, expect.hours[("chat-a", "24h")], "chat-a's page")
        downloads = download_csvs(lead)
        assert has_amount(downloads, expect.chat_day_cost, label=(expect.day,)), (
            f"no CSV row for {expect.day} with chat-a's cost that day, {expect.chat_day_cost}"
        )

        check_frontier(lead, {"chat-a", "code-a"}, "lead-a-frontier")

        # Another team's pages do not exist for this person.
        for url in (lead.url("dashboards:team", "team-b"), lead.url("dashboards:endpoint", embed)):
            response = lead.page.goto(url)
            assert response is not None and response.status == 404, (url, response and response.status)
        lead.errors.clear()  # the 404 pages' "failed to load resource" messages

        other = switch_user(lead, "lead-b")
        check_frontier(other, {"embed-b"}, "lead-b-frontier")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_member_sees_team_endpoint_and_frontier(world: World, live_server) -> None:  # type: ignore[no-untyped-def]
    expect = expectations(world)
    with chromium() as browser:
        member = sign_in(browser, live_server.url, "member-a")
        team_url = member.url("dashboards:team", "team-a")
        home_is(member, team_url, "member-a-home")
        check_page(member, team_url, "member-a-team", "dashboards:team")
        drawn = check_page(
            member,
            member.url("dashboards:endpoint", expect.endpoint_pk["code-a"]),
            "member-a-endpoint",
            "dashboards:endpoint",
        )
        check_hour_series(drawn, expect.hours[("code-a", "24h")], "code-a's page")
        check_frontier(member, {"chat-a", "code-a"}, "member-a-frontier")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_finance_picks_a_month_drills_down_and_exports(world: World, live_server) -> None:  # type: ignore[no-untyped-def]
    expect = expectations(world)
    with chromium() as browser:
        finance = sign_in(browser, live_server.url, "finance")
        finance_url = finance.url("dashboards:finance")
        home_is(finance, finance_url, "finance-home")

        drawn = check_page(finance, finance_url, "finance", "dashboards:finance")
        stacked = [p for p in drawn if p["barmode"] in ("stack", "relative")]
        assert stacked, f"no stacked bar chart on the finance page: {[(p['key'], p['barmode']) for p in drawn]}"
        downloads = download_csvs(finance)
        assert has_amount(downloads, expect.team_a_month, label=("Team A", "team-a")), (
            f"no CSV row for team A with its month-to-date cost {expect.team_a_month}"
        )
        before = {p["key"]: json.dumps(p["traces"]) for p in stacked}
        after = pick_month(finance, expect.last_month)
        changed = [p for p in after if p["key"] in before and json.dumps(p["traces"]) != before[p["key"]]]
        assert changed, "the stacked bars did not change with the month"
        downloads = download_csvs(finance)
        assert has_amount(downloads, expect.team_a_last_month, label=("Team A", "team-a")), (
            f"no CSV row for team A with last month's cost {expect.team_a_last_month}"
        )

        check_page(finance, finance.url("dashboards:finance_team", "team-a"), "finance-team", "dashboards:finance_team")
        download_csvs(finance)
        check_page(
            finance,
            finance.url("dashboards:finance_endpoint", expect.endpoint_pk["chat-a"]),
            "finance-endpoint",
            "dashboards:finance_endpoint",
        )
        downloads = download_csvs(finance)
        assert has_amount(downloads, expect.chat_day_cost, label=(expect.day,)), (
            f"no CSV row for {expect.day} with chat-a's cost that day, {expect.chat_day_cost}"
        )
        check_frontier(finance, set(METERED), "finance-frontier")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_admin_sees_quotas_capacity_approvals_and_failures(world: World, live_server) -> None:  # type: ignore[no-untyped-def]
    expect = expectations(world)
    with chromium() as browser:
        admin = sign_in(browser, live_server.url, "admin")
        admin_url = admin.url("dashboards:admin")
        home_is(admin, admin_url, "admin-home")

        check_page(admin, admin_url, "admin", "dashboards:admin")
        text = admin.page.locator("main").inner_text()
        queue = {
            kind: admin.page.locator(f"[data-count={kind}] .stat-value").inner_text().strip()
            for kind in ("endpoints", "quota_requests")
        }
        assert queue == {"endpoints": "1", "quota_requests": "1"}, f"approval queue counts: {queue}"
        assert "Ray Serve rejected the config" in text, "the failed operation is not shown"
        download_csvs(admin)

        check_page(admin, admin.url("dashboards:finance"), "admin-finance", "dashboards:finance")
        check_page(admin, admin.url("dashboards:team", "team-b"), "admin-team-b", "dashboards:team")
        drawn = check_page(
            admin,
            admin.url("dashboards:endpoint", expect.endpoint_pk["embed-b"]),
            "admin-endpoint",
            "dashboards:endpoint",
        )
        check_hour_series(drawn, expect.hours[("embed-b", "24h")], "embed-b's page")
        check_frontier(admin, set(METERED), "admin-frontier")
