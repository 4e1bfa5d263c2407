"""The playground at /ui, in a real headless Chromium against a real gateway.

What a person sees must be what the API says: the same final answer for the same prompt, the members in
the pool's order, failures marked with their error type, the stats view's numbers equal to
/v1/fusion/stats. Every page runs with zero console errors or warnings and requests nothing outside the
gateway's origin; screenshots at laptop and phone widths are kept in test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, ViewportSize

from gateway.pipeline.auth import UNAUTHORIZED
from gateway.routes.ui import CSP, STATIC
from tests.conftest import GatewayRunner
from tests.support.browser import LAPTOP, PHONE, Watched, chromium
from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.support.servers import wait_until
from tests.test_fusion import pool_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = (ROOT / "config" / "gateway.yaml").read_text()
PROMPT = "What is 37 * 12?"

# The default config's members and judge, a few times faster, plus a member that always fails with a 503
# and one that never answers. Same seed and profile names: the same answers as the default config.
FAST = """
providers:
  sim:
    type: simulator
    seed: 7
    profiles:
      fast:      {ttft_ms: 15, tokens_per_s: 600, jitter_ms: 5, accuracy: 0.7}
      balanced:  {ttft_ms: 25, tokens_per_s: 400, jitter_ms: 5, accuracy: 0.7}
      slow:      {ttft_ms: 35, tokens_per_s: 300, jitter_ms: 5, accuracy: 0.7}
      judge:     {ttft_ms: 10, tokens_per_s: 3000, accuracy: 0.9}
      finetuned: {ttft_ms: 10, tokens_per_s: 3000, jitter_ms: 3, accuracy: 0.76}
  flaky:
    type: simulator
    retry: {max_retries: 0}
    profiles:
      broken: {ttft_ms: 5, failures: {rate: 1.0, status: 503}}
      hung:   {ttft_ms: 5, failures: {timeout_rate: 1.0}}
models:
  sim-fast:     {provider: sim, model: fast,      price: {input: 0.15, output: 0.60}}
  sim-balanced: {provider: sim, model: balanced,  price: {input: 0.25, output: 1.00}}
  sim-slow:     {provider: sim, model: slow,      price: {input: 0.10, output: 0.40}}
  sim-judge:    {provider: sim, model: judge,     price: {input: 0.10, output: 0.40}}
  sim-ft:       {provider: sim, model: finetuned, price: {input: 0.30, output: 1.20}}
  sim-broken:   {provider: flaky, model: broken,  price: {input: 0.10, output: 0.40}}
  sim-hung:     {provider: flaky, model: hung,    price: {input: 0.10, output: 0.40}}
pools:
  best-of-3:
    mode: best-of
    members: [sim-fast, sim-balanced, sim-slow]
    judge: {model: sim-judge, swap: true}
    baseline: {model: sim-ft, sample_rate: 1.0, compare: judge}
  merge-3:
    mode: merge
    members: [sim-fast, sim-balanced, sim-slow]
    judge: {model: sim-judge}
  debate-3:
    mode: debate
    members: [sim-fast, sim-balanced, sim-slow]
    judge: {model: sim-judge}
    debate: {rounds: 2, final: best-of}
  shaky:
    mode: best-of
    members: [sim-fast, sim-broken, sim-hung, sim-slow]
    judge: {model: sim-judge}
    timeout_s: 0.5
  merge-3-analysis:
    mode: merge
    members: [sim-fast, sim-balanced, sim-slow]
    judge: {model: sim-judge}
    merge: {analysis: true}
"""

KEY = "sk-playground-0123456789"
OTHER_KEY = "sk-playground-other-0123456789"
KEYS = (
    f"""
auth:
  keys:
    - {{name: alpha, key: {KEY}, pools: [best-of-3], models: [sim-fast], rpm: 1}}
    - {{name: beta, key: {OTHER_KEY}, pools: ["*"], models: ["*"]}}
"""
    + FAST
)

pytestmark = pytest.mark.browser


# ------------------------------------------------------------------ helpers


@contextmanager
def ui(
    url: str, viewport: ViewportSize = LAPTOP, *, view: str = "", expected: tuple[str, ...] = ()
) -> Iterator[Watched]:
    """The page, loaded. On the way out: no console error or warning but the ``expected`` ones (the
    browser's own log line for an HTTP error status the test provoked), nothing fetched from another
    origin."""
    with chromium(viewport) as browser:
        browser.page.set_default_timeout(15_000)
        browser.page.goto(f"{url}/ui{view}")
        yield browser
        problems, urls = list(browser.problems), browser.urls
    assert sorted(problems) == sorted(expected)
    assert urls and all(u.startswith(url + "/") for u in urls), urls


def models_loaded(page: Page) -> None:
    page.wait_for_selector("#model option", state="attached")


def finished(page: Page) -> None:
    """Wait for the run to end; fail with what the page says if it ended in an error."""
    state = page.wait_for_selector(".final [data-state]", state="attached", timeout=30_000)
    assert state is not None
    assert state.get_attribute("data-state") == "done", page.locator("#error").text_content()


def ask(page: Page, model: str, prompt: str) -> None:
    page.select_option("#model", model)
    page.fill("#prompt", prompt)
    page.click("#send")
    finished(page)


def answer_shown(page: Page) -> str:
    return page.locator(".final .text").text_content() or ""


def columns(page: Page) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        ".member",
        """els => els.map(e => ({
            model: e.dataset.model,
            state: e.dataset.state,
            badge: e.querySelector('.state').textContent,
            winner: e.classList.contains('is-winner') && e.querySelector('.winner').checkVisibility(),
            winner_label: e.querySelector('.winner').textContent,
            text: [...e.querySelectorAll('.round-block .text')].map(t => t.textContent),
            rounds: [...e.querySelectorAll('.round-badge')].map(b => Number(b.dataset.round)),
        }))""",
    )


def api_answer(url: str, model: str, prompt: str, key: str | None = None) -> str:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    r = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]


def charts_drawn(page: Page, scope: str) -> int:
    """Every chart SVG under ``scope`` has a real size and at least one bar; returns how many there are."""
    svgs = page.locator(f"{scope} svg")
    for i in range(svgs.count()):
        box = svgs.nth(i).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 0, (scope, i, box)
        bars = svgs.nth(i).locator("rect.bar")
        assert bars.count() >= 1
        assert any((bars.nth(j).bounding_box() or {"width": 0})["width"] > 0 for j in range(bars.count()))
    return svgs.count()


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"))


# ------------------------------------------------------------------ serving


def test_the_page_is_served_with_a_strict_policy_and_needs_no_key(gateway: GatewayRunner) -> None:
    with gateway(KEYS) as (_, srv):
        page = httpx.get(srv.url + "/ui")
        again = httpx.get(srv.url + "/ui", headers={"if-none-match": page.headers["etag"]})
        script = httpx.get(srv.url + "/ui/app.js")
        style = httpx.get(srv.url + "/ui/style.css")
        icon = httpx.get(srv.url + "/ui/favicon.svg")
        slash = httpx.get(srv.url + "/ui/", follow_redirects=True)
        missing = httpx.get(srv.url + "/ui/nothing.js")
        escape = httpx.get(srv.url + "/ui/..%2Froutes%2Fui.py")
        api = httpx.get(srv.url + "/v1/models")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP and "unsafe" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache" and page.headers["etag"]
    assert again.status_code == 304 and again.content == b""
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert icon.headers["content-type"] == "image/svg+xml"
    assert slash.status_code == 200 and slash.text == page.text
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert escape.status_code == 404
    assert api.status_code == 401  # the page is public, the API it calls is not


def test_the_assets_fetch_nothing_elsewhere_and_never_write_html() -> None:
    """Offline by construction: no absolute URL but the SVG namespace; model output is only text."""
    files = sorted(p for p in STATIC.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"index.html", "app.js", "style.css", "favicon.svg"}
    for path in files:
        text = path.read_text()
        urls = set(re.findall(r"\w+://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), (path.name, urls)
        assert "@import" not in text and "@font-face" not in text, path.name
        if path.suffix == ".js":
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage.",
                         "document.cookie"):
                assert sink not in text, (path.name, sink)
    index = (STATIC / "index.html").read_text()
    assert "<script>" not in index and "style=" not in index  # nothing inline: the CSP would refuse it


# ------------------------------------------------------------------ the playground


def test_default_pools_give_the_same_answer_through_the_page_as_through_the_api(gateway: GatewayRunner) -> None:
    with gateway(DEFAULT_CONFIG) as (_, srv), ui(srv.url) as browser:
        page = browser.page
        members = {m["id"]: m["fusion"]["members"] for m in httpx.get(srv.url + "/v1/models").json()["data"]
                   if m.get("fusion")}
        models_loaded(page)
        for pool in ("best-of-3", "merge-3", "debate-3"):
            ask(page, pool, PROMPT)
            cols = columns(page)
            assert [c["model"] for c in cols] == members[pool] == ["sim-fast", "sim-balanced", "sim-slow"]
            # every column ended; merge may cancel a straggler once its quorum and grace are met
            assert all(c["state"] in ("ok", "cancelled") for c in cols), cols
            shown = answer_shown(page)
            assert shown == api_answer(srv.url, pool, PROMPT)
            assert shown.endswith("The answer is 444.")
            verdict = page.locator(".verdict").inner_text()
            winners = [c for c in cols if c["winner"]]
            if pool == "best-of-3":
                picked = page.locator(".verdict-winner").text_content()
                assert len(winners) == 1 and winners[0]["model"] == picked and winners[0]["winner_label"] == "★ winner"
                assert page.locator(".verdict .analysis").inner_text().startswith("Why: ")
                assert len(page.locator(".verdict .analysis").inner_text()) > len("Why: ") + 10
                assert winners[0]["text"] == [shown]  # best-of: the final answer is the winner's own text
            elif pool == "merge-3":
                assert "The judge merged the members' answers" in verdict and winners == []
            else:
                # the three agree on this prompt at once: no debate round and no judge call was needed
                assert "The members agreed: no judge call was needed." in verdict
                assert len(winners) == 1 and winners[0]["winner_label"] == "★ answer used"
            cost = page.locator('[data-total="cost"]').get_attribute("data-value")
            latency = page.locator('[data-total="latency"]').get_attribute("data-value")
            assert cost and float(cost) > 0 and latency and float(latency) > 0
            assert page.locator(".metrics .legend li").count() >= 3  # fan-out, judge, gateway
            # latency and cost bars for the three members (and the judge when it was called), and the breakdown
            assert charts_drawn(page, ".metrics") == 3
            assert page.locator(".metrics svg").first.locator("rect.bar").count() == (3 if pool == "debate-3" else 4)
            if pool == "best-of-3":
                browser.screenshot("ui-playground-laptop.png")


def test_a_failing_and_a_hung_member_are_marked_and_the_answer_still_arrives(gateway: GatewayRunner) -> None:
    with gateway(FAST) as (_, srv), ui(srv.url) as browser:
        page = browser.page
        models_loaded(page)
        ask(page, "shaky", PROMPT)
        cols = {c["model"]: c for c in columns(page)}
        shown = answer_shown(page)
        assert shown == api_answer(srv.url, "shaky", PROMPT)
        browser.screenshot("ui-failures-laptop.png")
    assert list(cols) == ["sim-fast", "sim-broken", "sim-hung", "sim-slow"]
    assert cols["sim-broken"]["state"] == "error" and cols["sim-broken"]["badge"] == "failed · http_503"
    assert cols["sim-broken"]["text"] == ["No answer: http_503."]
    assert cols["sim-hung"]["state"] == "timeout" and cols["sim-hung"]["badge"] == "timed out"
    assert cols["sim-hung"]["text"] == ["No answer: timeout."]
    assert cols["sim-fast"]["state"] == cols["sim-slow"]["state"] == "ok"
    assert [m for m, c in cols.items() if c["winner"]] in (["sim-fast"], ["sim-slow"])
    assert shown.endswith("The answer is 444.")


def test_debate_rounds_show_in_every_column(gateway: GatewayRunner) -> None:
    prompt = "What is 12 * 17?"  # the members disagree at first on this one
    with gateway(FAST) as (_, srv):
        body = {"model": "debate-3", "messages": [{"role": "user", "content": prompt}]}
        rounds = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=30).json()["fusion"]["rounds"]
        assert rounds, "the simulator changed: pick a prompt the members disagree on"
        with ui(srv.url) as browser:
            page = browser.page
            models_loaded(page)
            ask(page, "debate-3", prompt)
            cols = columns(page)
            shown = answer_shown(page)
            log = page.locator(".round-log li").all_inner_texts()
            browser.screenshot("ui-debate-laptop.png")
    assert all(c["rounds"][:2] == [0, 1] and len(c["text"]) == len(c["rounds"]) for c in cols), cols
    assert log and log[0].startswith("Round 1 ")
    winner = [c for c in cols if c["winner"]]
    assert len(winner) == 1 and winner[0]["text"][-1] == shown  # the answer is the winner's last round


def test_a_merge_that_shows_its_work_draws_the_judges_comparison(gateway: GatewayRunner) -> None:
    prompt = "What is 12 * 17?"  # two members give 204, one 201: a contradiction to settle
    with gateway(FAST) as (_, srv):
        body = {"model": "merge-3-analysis", "messages": [{"role": "user", "content": prompt}]}
        api = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=30).json()
        expected = api["fusion"]["analysis"]
        assert expected["contradictions"], "the simulator changed: pick a prompt the members disagree on"
        with ui(srv.url) as browser:
            page = browser.page
            models_loaded(page)
            ask(page, "merge-3-analysis", prompt)
            panel = page.locator(".verdict .analysis-panel")
            headings = panel.locator("h5").all_inner_texts()
            shown = {key: panel.locator(f'[data-section="{key}"] li').all_inner_texts() for key in expected
                     if key in ("consensus", "contradictions", "coverage_gaps", "unique_insights", "blind_spots")}
            key = panel.locator(".label-key").inner_text()
            cols = columns(page)
            verdict = page.locator(".verdict").inner_text()
            judge_bars = page.locator(".metrics svg").first.locator("rect.bar").count()
            status = panel.get_attribute("data-analysis")
            final = answer_shown(page)
            browser.screenshot("ui-merge-analysis-laptop.png")
    assert status == "ok" and final == api["choices"][0]["message"]["content"] == "The answer is 204."
    assert headings == ["Consensus", "Contradictions", "Coverage gaps", "Unique insights", "Blind spots"]
    # Labels are drawn anew per request: compare what does not depend on them.
    assert {k: len(v) for k, v in shown.items()} == {k: len(expected[k]) for k in shown}
    assert shown["contradictions"][0].endswith("Worked out: 12 * 17 = 204.")
    assert expected["contradictions"][0].endswith("Worked out: 12 * 17 = 204.")
    # Every label is resolved to its column and model, as the columns show them.
    pairs = re.findall(r"([A-Z]) = column (\d) \(([\w-]+)\)", key)
    assert sorted((int(col), model) for _, col, model in pairs) == [(i + 1, c["model"]) for i, c in enumerate(cols)]
    assert "The judge merged the members' answers" in verdict and "2 calls" in verdict
    assert "1 judge call · " in verdict[verdict.index("The judge's comparison"):]
    assert judge_bars == 4  # three members and the judge (both its calls, as one bar)


def test_the_judges_reasons_say_which_model_each_anonymous_label_was(gateway: GatewayRunner) -> None:
    with gateway(FAST) as (_, srv), ui(srv.url) as browser:
        page = browser.page
        models_loaded(page)
        ask(page, "best-of-3", PROMPT)
        picked = page.locator(".verdict-winner").text_content()
        legend = page.eval_on_selector_all(
            ".verdict .label-key", "els => els.map(e => [e.dataset.label, e.dataset.model, e.textContent])"
        )
        cited = page.eval_on_selector_all(
            ".verdict .analysis .label-ref", "els => els.map(e => [e.dataset.label, e.dataset.model])"
        )
        analysis = page.locator(".verdict .analysis").inner_text()
        browser.screenshot("ui-verdict-labels-laptop.png")
    # every answer the judge saw, in column order, with the label it went by
    assert [(model, text) for _, model, text in legend] == [
        ("sim-fast", f"{legend[0][0]} = sim-fast (column 1)"),
        ("sim-balanced", f"{legend[1][0]} = sim-balanced (column 2)"),
        ("sim-slow", f"{legend[2][0]} = sim-slow (column 3)"),
    ]
    assert len({label for label, _, _ in legend}) == 3
    # the simulated judge names its pick: "Candidate K gives the best-supported answer ..."
    ((label, model),) = cited
    assert model == picked and (label, model) in [(a, b) for a, b, _ in legend]
    assert analysis.startswith(f"Why: Candidate {label} ({model}) gives the best-supported answer")


def test_a_member_cut_after_quorum_and_grace_is_drawn_as_by_design_not_as_a_failure(gateway: GatewayRunner) -> None:
    config = FAST + """  quick:
    mode: best-of
    members: [sim-fast, sim-balanced, sim-hung]
    judge: {model: sim-judge}
    quorum: 2
    grace_ms: 50
"""
    with gateway(config) as (_, srv):
        api = httpx.post(srv.url + "/v1/chat/completions", timeout=30,
                         json={"model": "quick", "messages": [{"role": "user", "content": PROMPT}]}).json()
        with ui(srv.url) as browser:
            page = browser.page
            models_loaded(page)
            ask(page, "quick", PROMPT)
            cols = {c["model"]: c for c in columns(page)}
            final = page.locator(".final [data-state]").inner_text()
            colours = page.eval_on_selector_all(
                ".member .state", "els => els.map(e => getComputedStyle(e).backgroundColor)"
            )
            browser.screenshot("ui-grace-laptop.png")
    assert api["fusion"]["members"][2]["status"] == "cancelled" and api["fusion"]["degraded"] is False
    hung = cols["sim-hung"]
    assert (hung["state"], hung["badge"]) == ("cancelled", "not needed")
    assert hung["text"] == ["Cut once the quorum had answered and the grace period was over: by design, not a failure."]
    assert final == "Complete."  # not "Complete, degraded"
    # drawn unlike a failure: no red badge
    assert colours[2] == "rgba(0, 0, 0, 0)" and colours[0] == colours[2]


def test_a_system_prompt_a_conversation_and_parameters_go_in_the_request(gateway: GatewayRunner) -> None:
    system = "Answer in one line."
    follow_up = "And what is 38 * 12?"
    with gateway(FAST) as (_, srv), ui(srv.url) as browser:
        page = browser.page
        models_loaded(page)
        assert page.locator("#reply").is_hidden() and page.locator("#thread").is_hidden()
        page.click("#options summary")
        page.fill("#system", system)
        page.fill("#temperature", "0.3")
        page.fill("#max-tokens", "200")
        ask(page, "sim-fast", PROMPT)
        first = answer_shown(page)
        page.click("#reply")
        assert page.input_value("#prompt") == "" and page.locator("#prompt-label").inner_text() == "Your reply"
        turns = page.eval_on_selector_all("#turns li", "els => els.map(e => [e.dataset.role, e.lastChild.data])")
        assert turns == [["user", PROMPT], ["assistant", first]]
        ask(page, "sim-fast", follow_up)
        second = answer_shown(page)
        page.click("#new-thread")
        assert page.locator("#thread").is_hidden()
        page.fill("#temperature", "")  # cleared: not sent
        ask(page, "best-of-3", PROMPT)
        sent = [r.post_data_json for r in browser.requests if r.url.endswith("/v1/chat/completions")]
    params = {"temperature": 0.3, "max_tokens": 200}
    conversation = [{"role": "system", "content": system}, {"role": "user", "content": PROMPT},
                    {"role": "assistant", "content": first}, {"role": "user", "content": follow_up}]
    assert sent[0] == {"model": "sim-fast", "messages": conversation[:2], "stream": True,
                       "stream_options": {"include_usage": True}, **params}
    assert sent[1] == {"model": "sim-fast", "messages": conversation, "stream": True,
                       "stream_options": {"include_usage": True}, **params}
    assert sent[2] == {"model": "best-of-3", "messages": conversation[:2], "stream": True,
                       "stream_options": {"include_usage": True}, "max_tokens": 200, "fusion": {"events": True}}
    # what the page showed is what the API answers to the same conversation
    with gateway(FAST) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "sim-fast", "messages": conversation,
                                                              **params}, timeout=30)
    assert r.json()["choices"][0]["message"]["content"] == second


def test_a_model_streams_as_a_plain_completion_and_a_run_can_be_stopped(gateway: GatewayRunner) -> None:
    with gateway(FAST) as (_, srv), ui(srv.url) as browser:
        page = browser.page
        models_loaded(page)
        ask(page, "sim-fast", PROMPT)
        assert page.locator(".member, .verdict").count() == 0  # no pool: no columns, no judge
        assert answer_shown(page) == api_answer(srv.url, "sim-fast", PROMPT)
        totals = page.locator(".totals").inner_text()
        assert "Latency (measured here)" in totals and re.search(r"Tokens\s+\d+ in, \d+ out", totals)

        page.select_option("#model", "shaky")  # its hung member keeps the run going for half a second
        page.click("#send")
        page.wait_for_selector('.member[data-model="sim-hung"][data-state="running"]')
        page.click("#stop")
        page.wait_for_selector('.final [data-state="error"]')
        assert page.locator("#status").inner_text() == "Stopped."
        assert page.locator('.member[data-model="sim-hung"] .state').inner_text() == "stopped"
        assert page.locator("#send").is_enabled() and page.locator("#stop").is_disabled()
        sent = [r.post_data_json for r in browser.requests if r.url.endswith("/v1/chat/completions")]
    assert sent[0] == {"model": "sim-fast", "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                       "stream_options": {"include_usage": True}}
    assert sent[1]["fusion"] == {"events": True} and sent[1]["model"] == "shaky"


def test_model_output_is_shown_as_text_never_as_markup(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    hostile = '<img src="x" onerror="document.title=\'owned\'">'
    fake.behaviours["a"] = answer(hostile)
    fake.behaviours["b"] = answer("<b>BEST</b> & <i>plain</i>")
    fake.behaviours["c"] = answer("<script>document.title='owned'</script>")
    fake.behaviours["j"] = judge_picking(lambda t: "BEST" in t)
    pool = "  p:\n    mode: best-of\n    members: [a, b, c]\n    judge: {model: j}\n"
    with gateway(pool_config(fake, pool)) as (_, srv), ui(srv.url) as browser:
        page = browser.page
        models_loaded(page)
        ask(page, "p", "Say something.")
        cols = columns(page)
        assert page.locator(".run img, .run script, .run i").count() == 0
        assert page.title() != "owned"
        shown = answer_shown(page)
    assert [c["text"] for c in cols] == [[hostile], ["<b>BEST</b> & <i>plain</i>"],
                                         ["<script>document.title='owned'</script>"]]
    assert shown == "<b>BEST</b> & <i>plain</i>"


# ------------------------------------------------------------------ stats


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part]
    return obj


def test_the_stats_view_draws_what_the_api_reports_live(gateway: GatewayRunner) -> None:
    with gateway(FAST) as (_, srv):

        def stats() -> dict[str, Any]:
            return {p["pool"]: p for p in httpx.get(srv.url + "/v1/fusion/stats").json()["pools"]}

        for a in range(21, 25):
            api_answer(srv.url, "best-of-3", f"What is {a} * 13?")
        # every request was sampled against the baseline: wait for the comparisons to land
        assert wait_until(lambda: stats()["best-of-3"]["comparison"]["n"]
                          + stats()["best-of-3"]["comparison"]["errors"] == 4, timeout=10)
        with ui(srv.url, view="#stats") as browser:
            page = browser.page
            page.wait_for_selector('[data-pool="best-of-3"] [data-stat="requests.total"][data-value="4"]')
            expected = stats()
            card = '[data-pool="best-of-3"]'
            shown = dict(page.eval_on_selector_all(f"{card} [data-stat]",
                                                   "els => els.map(e => [e.dataset.stat, e.dataset.value])"))
            assert set(shown) == {
                "requests.total", "requests.ok", "requests.degraded", "requests.error",
                "fusion.latency_ms.p50", "fusion.latency_ms.p95", "baseline.latency_ms.p50",
                "baseline.latency_ms.p95", "fusion.mean_cost_usd", "baseline.mean_cost_usd",
                "comparison.wins", "comparison.ties", "comparison.losses",
            }
            for stat, value in shown.items():
                assert float(value) == _at(expected["best-of-3"], stat), stat
            counts = page.locator(f"{card} .legend li b").all_inner_texts()
            c = expected["best-of-3"]["comparison"]
            assert [t.split(" ")[0] for t in counts] == [str(c["wins"]), str(c["ties"]), str(c["losses"])]
            assert charts_drawn(page, card) == 3  # latency, cost, wins/ties/losses
            # pools with no traffic say so instead of drawing empty charts
            for quiet in ("merge-3", "debate-3", "shaky"):
                assert page.locator(f'[data-pool="{quiet}"] .empty').inner_text() == (
                    "No requests yet: send one from the playground.")
                assert page.locator(f'[data-pool="{quiet}"] svg').count() == 0
            browser.screenshot("ui-stats-laptop.png")

            # live: new traffic shows up without reloading the page
            api_answer(srv.url, "merge-3", PROMPT)
            page.wait_for_selector('[data-pool="merge-3"] [data-stat="requests.total"][data-value="1"]', timeout=8_000)
            assert page.locator('[data-pool="merge-3"] .chart').count() == 2  # no baseline: latency and cost only
            page.set_viewport_size(PHONE)
            assert no_horizontal_scroll(page)
            browser.screenshot("ui-stats-phone.png")

            # leaving the view stops the polling
            page.click("#tab-playground")
            polls = sum(1 for u in browser.urls if u.endswith("/v1/fusion/stats"))
            page.wait_for_timeout(2_600)  # longer than one polling interval (2 s)
            assert sum(1 for u in browser.urls if u.endswith("/v1/fusion/stats")) == polls
            assert page.locator("#view-stats").is_hidden()


# ------------------------------------------------------------------ keys


def test_with_keys_the_page_asks_for_one_and_sends_it_only_as_a_bearer_header(gateway: GatewayRunner) -> None:
    unauthorized = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    too_many = "Failed to load resource: the server responded with a status of 429 (Too Many Requests)"
    with gateway(KEYS) as (_, srv):
        models = srv.url + "/v1/models"
        chat = srv.url + "/v1/chat/completions"
        expected = (f"console.error: {unauthorized} ({models})", f"console.error: {too_many} ({chat})")
        with ui(srv.url, expected=expected) as browser:
            page = browser.page
            page.wait_for_selector("#error:not([hidden])")
            assert page.locator("#error").inner_text() == UNAUTHORIZED
            assert page.locator("#send").is_disabled()

            page.fill("#api-key", KEY)
            page.press("#api-key", "Enter")
            models_loaded(page)
            assert page.locator("#error").is_hidden()
            assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["best-of-3", "sim-fast"]
            ask(page, "best-of-3", PROMPT)
            assert answer_shown(page) == api_answer(srv.url, "best-of-3", PROMPT, key=OTHER_KEY)

            # an HTTP error before the stream: the envelope's message, as the gateway wrote it
            page.click("#send")
            page.wait_for_selector("#error:not([hidden])")
            assert page.locator("#error").inner_text() == "key 'alpha' is over its limit of 1 requests per minute"

            stored = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
            sent = [(r.url, r.headers.get("authorization")) for r in browser.requests]
    assert stored == [0, 0, ""]  # memory only: the box to keep it for the tab was not ticked
    assert all(KEY not in url for url, _ in sent)
    api = [(url, auth) for url, auth in sent if "/v1/" in url]
    assert [url for url, _ in api] == [models, models, chat, chat]
    assert [auth for _, auth in api] == [None, f"Bearer {KEY}", f"Bearer {KEY}", f"Bearer {KEY}"]
    assert all(auth is None for url, auth in sent if "/v1/" not in url)  # never on the page's own files


# ------------------------------------------------------------------ keyboard and phone


def test_keyboard_alone_sends_a_prompt_on_a_phone_without_horizontal_scrolling(gateway: GatewayRunner) -> None:
    with gateway(FAST) as (_, srv), ui(srv.url, PHONE) as browser:
        page = browser.page
        models_loaded(page)
        for _ in range(15):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "model":
                break
        focus = page.evaluate("[document.activeElement.id, getComputedStyle(document.activeElement).outlineStyle]")
        assert focus == ["model", "solid"]  # reached by Tab, and the focus ring shows
        page.keyboard.press("ArrowDown")
        assert page.input_value("#model") == "merge-3"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "prompt"
        page.keyboard.press("Control+A")
        page.keyboard.type(PROMPT)
        page.keyboard.press("Control+Enter")
        finished(page)
        assert answer_shown(page) == api_answer(srv.url, "merge-3", PROMPT)
        assert page.locator(".member").count() == 3
        assert no_horizontal_scroll(page)
        browser.screenshot("ui-playground-phone.png")

        # the views are links: Shift+Tab back to "Live stats" and Enter opens it, focus on its heading
        for _ in range(15):
            page.keyboard.press("Shift+Tab")
            if page.evaluate("document.activeElement.id") == "tab-stats":
                break
        page.keyboard.press("Enter")
        page.wait_for_selector('[data-pool="merge-3"] [data-stat="requests.total"][data-value="2"]')
        assert page.evaluate("document.activeElement.id") == "stats-title"
        assert no_horizontal_scroll(page)
