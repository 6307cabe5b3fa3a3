"""The chart plumbing every dashboard shares: CSV cells and responses, ?csv= on a page, windows, plotly.js served."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from django.http import Http404
from django.test import RequestFactory

from apps.core.charts import (
    DEFAULT_WINDOW,
    PALETTE,
    WINDOWS,
    Chart,
    assert_valid_figure,
    base_layout,
    cell,
    render_dashboard,
    window_from,
)
from apps.core.staticfinders import PLOTLY_JS, PlotlyFinder


def _chart(rows: list[list[object]]) -> Chart:
    return Chart(
        key="cost",
        title="Cost",
        data=[{"type": "bar", "x": [r[0] for r in rows], "y": [r[1] for r in rows]}],
        columns=["team", "cost"],
        rows=rows,
    )


def test_cells_quote_spreadsheet_formulas_and_round_exact_amounts():
    assert cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert cell("@sum") == "'@sum" and cell("-x") == "'-x" and cell("+1") == "'+1"
    assert cell(-3) == "-3"  # a number is not text: left alone
    assert cell(Fraction(1, 3)) == "0.3333"
    assert cell(Decimal("2.50")) == "2.50"
    assert cell(None) == ""
    assert cell(dt.date(2026, 11, 1)) == "2026-11-01"


def test_csv_link_and_download(rf: RequestFactory):
    chart = _chart([["team-a", Fraction(5, 2)], ["=evil", 1]])
    page = rf.get("/dashboards/finance/", {"month": "2026-10", "csv": "stale"})
    with pytest.raises(Http404):
        render_dashboard(page, "unused.html", {}, [chart])
    assert chart.csv_url == "/dashboards/finance/?month=2026-10&csv=cost"
    download = render_dashboard(rf.get(chart.csv_url), "unused.html", {}, [chart], csv_name="finance")
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    assert download["Content-Disposition"] == 'attachment; filename="finance-cost-2026-10.csv"'
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows == [["team", "cost"], ["team-a", "2.5000"], ["'=evil", "1"]]


def test_unknown_window_falls_back_with_a_message(rf: RequestFactory):
    window, error = window_from(rf.get("/", {"window": "9y"}))
    assert window.key == DEFAULT_WINDOW and "9y" in error and "1h, 24h, 7d, 30d" in error
    window, error = window_from(rf.get("/", {"window": "7d"}))
    assert (window.key, window.resolution, error) == ("7d", "hour", "")
    assert [w.resolution for w in WINDOWS.values()] == ["minute", "hour", "hour", "day"]


def test_window_bounds_end_after_the_current_period():
    now = dt.datetime(2026, 11, 28, 10, 17, 30, tzinfo=dt.UTC)
    assert WINDOWS["1h"].bounds(now) == (
        dt.datetime(2026, 11, 28, 9, 18, tzinfo=dt.UTC),
        now.replace(minute=18, second=0),
    )
    assert WINDOWS["24h"].bounds(now) == (
        dt.datetime(2026, 11, 27, 11, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 28, 11, tzinfo=dt.UTC),
    )


def test_layout_uses_the_colour_blind_safe_palette_and_merges_overrides():
    layout = base_layout(yaxis={"title": {"text": "s"}}, height=200)
    assert layout["colorway"] == PALETTE and layout["height"] == 200
    assert layout["yaxis"]["title"] == {"text": "s"} and layout["yaxis"]["rangemode"] == "tozero"
    assert_valid_figure(_chart([["a", 1]]))
    with pytest.raises(ValueError):
        assert_valid_figure(Chart(key="x", title="x", data=[{"type": "bar", "colour": "red"}]))


def test_plotly_js_comes_from_the_pinned_plotly_package():
    import plotly

    finder = PlotlyFinder()
    path = finder.find(PLOTLY_JS)
    assert path.endswith("plotly/package_data/plotly.min.js")
    assert finder.find("vendor/other.js") == "" and finder.find(PLOTLY_JS, find_all=True) == [path]
    with open(path, encoding="utf-8") as f:
        head = f.read(200)
    assert "plotly.js v" in head
    assert plotly.__version__  # the Python side that builds the figures, from the same installed package
    listed = [(p, s.location) for p, s in finder.list([])]
    assert listed == [("plotly.min.js", path.rsplit("/", 1)[0])]


def test_plotly_js_is_served_to_the_browser(client, settings):
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    response = client.get("/static/" + PLOTLY_JS)
    assert response.status_code == 200
    assert b"plotly.js v" in b"".join(response.streaming_content)[:200]


def test_spec_script_is_json_that_cannot_close_its_script_element():
    chart = Chart(key="x y", title="t", data=[{"type": "bar", "x": ["</script><b>&"], "y": [1]}], rows=[["a", 1]])
    tag = str(chart.spec_script())
    assert tag.startswith('<script id="chart-x-y-spec" type="application/json">') and tag.endswith("</script>")
    body = tag.removeprefix('<script id="chart-x-y-spec" type="application/json">').removesuffix("</script>")
    assert "<" not in body and ">" not in body and "&" not in body
    assert json.loads(body)["data"][0]["x"] == ["</script><b>&"]
    assert json.loads(body)["config"]["displaylogo"] is False
