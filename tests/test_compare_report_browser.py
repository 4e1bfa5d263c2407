"""The HTML report of a real compare run, opened in a real headless Chromium: no console errors, nothing
fetched from the network, and every chart rendered at a real size. A screenshot is kept for people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import GatewayRunner
from tests.support.browser import PHONE, chromium

CONFIG = """
providers:
  sim:
    type: simulator
    seed: 7
    profiles:
      fast:  {ttft_ms: 5, tokens_per_s: 4000, jitter_ms: 3, accuracy: 0.7}
      slow:  {ttft_ms: 25, tokens_per_s: 2000, jitter_ms: 10, accuracy: 0.7}
      judge: {ttft_ms: 5, tokens_per_s: 4000}
      ft:    {ttft_ms: 8, tokens_per_s: 3000, jitter_ms: 3, accuracy: 0.76}
models:
  sim-fast:  {provider: sim, model: fast, price: {input: 0.15, output: 0.60}}
  sim-slow:  {provider: sim, model: slow, price: {input: 0.10, output: 0.40}}
  sim-judge: {provider: sim, model: judge, price: {input: 2.50, output: 10.00}}
  sim-ft:    {provider: sim, model: ft, price: {input: 0.30, output: 1.20}}
pools:
  best-of-3:
    mode: best-of
    members: [sim-fast, sim-slow, sim-fast]
    judge: {model: sim-judge, swap: true}
  merge-2:
    mode: merge
    members: [sim-fast, sim-slow]
    judge: {model: sim-judge}
"""


@pytest.mark.browser
def test_html_report_renders_its_charts_offline(gateway: GatewayRunner, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"What is {a} * 13?"},
                        {"role": "assistant", "content": f"The answer is {a * 13}."},
                    ]
                }
            )
            for a in range(21, 45)
        )
        + "\n"
    )
    out = tmp_path / "out"
    with gateway(CONFIG) as (_, srv):
        code = main(
            [
                "compare",
                "--dataset",
                str(data),
                "--pool",
                "best-of-3",
                "--pool",
                "merge-2",
                "--baseline",
                "sim-ft",
                "--url",
                srv.url,
                "--scorer",
                "numeric",
                "--out",
                str(out),
                "--baseline-training-usd",
                "5",
                "--concurrency",
                "8",
            ]
        )
    assert code == 0
    html = (out / "report.html").read_text()
    for fetches in ("src=", "href=", "url(", "@import", "<script", "https://"):  # nothing to fetch, nothing to run
        assert fetches not in html

    with chromium({"width": 1100, "height": 900}) as browser:
        page = browser.page
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        sizes = {}
        charts = ("chart-quality-cost", "chart-pareto-cost", "chart-pareto-p50", "chart-latency", "chart-pairwise",
                  "chart-break-even")
        for chart in charts:
            box = page.locator(f"svg#{chart}").bounding_box()
            assert box is not None, chart
            sizes[chart] = box
            assert box["width"] > 300 and box["height"] > 100, (chart, box)
        # The marks themselves are drawn: one point per system, one box per system, one bar row per pool.
        assert page.locator("#chart-quality-cost circle").count() == 3
        assert page.locator("#chart-latency rect").count() == 3
        assert page.locator("#chart-pairwise rect").count() >= 3 + 2  # legend + at least one segment per pool
        for i in range(page.locator("#chart-latency rect").count()):
            rect = page.locator("#chart-latency rect").nth(i).bounding_box()
            assert rect is not None and rect["width"] > 0 and rect["height"] > 0
        # Both frontiers: every system a point, the ones on the frontier filled, named in the caption and
        # on the staircase, as summary.json computed them.
        pareto = json.loads((out / "summary.json").read_text())["pareto"]
        for chart, key in (("chart-pareto-cost", "accuracy_vs_cost"), ("chart-pareto-p50", "accuracy_vs_p50")):
            assert page.locator(f"#{chart} circle").count() == 3
            on = page.eval_on_selector_all(f"#{chart} circle.frontier", "els => els.map(e => e.dataset.system)")
            assert sorted(on) == sorted(pareto[key]) and on, (chart, on)
            for i in range(3):
                dot = page.locator(f"#{chart} circle").nth(i).bounding_box()
                assert dot is not None and dot["width"] > 0 and dot["height"] > 0
            assert page.locator(f"#{chart} polyline.frontier").count() == 1
            caption = page.locator(f'[data-frontier="{chart}"] strong').inner_text()
            assert sorted(caption.split(", ")) == sorted(pareto[key])
        headline = page.locator(".headline strong").first.inner_text()
        assert headline.startswith("best-of-3 is right ")
        shot = browser.screenshot("compare-report.png")
    assert browser.problems == []
    assert browser.urls == [(out / "report.html").as_uri()]  # the page itself, nothing else
    assert shot.stat().st_size > 10_000

    # On a phone (390 px) nothing scrolls sideways: the table turns into one card per system, each cell
    # with its column's name, and every cell lies inside the screen.
    with chromium(PHONE) as phone:
        page = phone.page
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        cells = page.locator("table td")
        assert cells.count() == 3 * 8
        for i in range(cells.count()):
            box = cells.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (i, box)
        labels = page.evaluate(
            "[...document.querySelectorAll('table tr:nth-child(2) td')]"
            ".map(td => getComputedStyle(td, '::before').content)"
        )
        assert labels == [  # labelled, not bare numbers
            "none", '"right"', '"95% CI"', '"failed"', '"mean cost / request"', '"total cost"', '"p50 ms"', '"p95 ms"'
        ]
        phone.screenshot("compare-report-phone.png")
    assert phone.problems == []
