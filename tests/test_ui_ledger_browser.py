"""The Requests and Spend views of /ui, in a real headless Chromium against a real gateway with its default
SQLite ledger.

What the page shows must be what the ledger's API returns: the same requests in the same order, the same
statuses and costs digit for digit (a cost under a millionth of a dollar included, which a float would print
as 2.9e-8), a pool request's calls in order, the spend per group and its exact total. Filters narrow the table
to exactly the API's filtered list, a client key sees only its own requests, and a gateway without a ledger
says so. Zero console errors or warnings but the browser's own line for an HTTP error the test provoked;
screenshots at laptop and phone widths in test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, ViewportSize

from gateway.wire.jsonutil import decimal_text
from tests.conftest import GatewayRunner
from tests.support.browser import LAPTOP, PHONE, Watched
from tests.support.servers import wait_until
from tests.test_ui_browser import FAST, no_horizontal_scroll, ui

ADMIN = "sk-admin-ledger-0123456789"
ALPHA = "sk-alpha-ledger-0123456789"
BETA = "sk-beta-ledger-0123456789"
# A model priced so low that a call costs 0.000000029 USD: a float would print 2.9e-8.
TINY = "  sim-tiny:     {provider: sim, model: fast,      price: {input: 0.001, output: 0.001}}\n"
CONFIG = (
    f"""
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: alpha, key: {ALPHA}, pools: ["*"], models: ["*"]}}
    - {{name: beta, key: {BETA}, pools: ["*"], models: ["*"]}}
"""
    + FAST.replace("models:\n", "models:\n" + TINY, 1)
)
Q = [{"role": "user", "content": "What is 37 * 12?"}]

pytestmark = pytest.mark.browser


# ------------------------------------------------------------------ traffic and the API


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def chat(url: str, rid: str, key: str | None, body: dict[str, Any]) -> int:
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"x-request-id": rid, **bearer(key)}, timeout=60)
    return r.status_code


def api(url: str, path: str, auth: str = ADMIN, **params: str) -> Any:
    """GET a ledger endpoint as ``auth`` (``params``: its query, a ``key`` filter included)."""
    r = httpx.get(url + path, params=params, headers=bearer(auth), timeout=20)
    assert r.status_code == 200, r.text
    return r.json(parse_float=Decimal)


def send_traffic(url: str) -> None:
    """A passthrough, a streamed passthrough under a millionth of a dollar, a pool with its shadow baseline,
    a pool whose members fail, and two refused requests (a wrong key, a body without messages)."""
    assert chat(url, "pt-1", ALPHA, {"model": "sim-fast", "messages": Q}) == 200
    assert chat(url, "tiny-1", ALPHA, {"model": "sim-tiny", "messages": Q, "stream": True}) == 200
    assert chat(url, "pool-1", BETA, {"model": "best-of-3", "messages": Q}) == 200
    assert chat(url, "shaky-1", BETA, {"model": "shaky", "messages": Q}) == 200
    assert chat(url, "bad-key", "sk-wrong-0123456789", {"model": "sim-fast", "messages": Q}) == 401
    assert chat(url, "bad-body", ALPHA, {"model": "sim-fast"}) == 400
    # the shadow baseline and its pairwise verdict are written after the answer went out
    wait_until(lambda: "baseline" in api(url, "/v1/fusion/requests/pool-1"), timeout=20)


def money(value: Decimal | int | None) -> str:
    """A cost as the page must print it: the API's digits, exactly (a JSON ``0`` arrives as an int)."""
    if value is None:
        return "–"
    return "$" + (format(value, "f") if isinstance(value, Decimal) else str(value))


# ------------------------------------------------------------------ the page


def unauthorized(url: str) -> str:
    return f"console.error: Failed to load resource: the server responded with a status of 401 (Unauthorized) ({url})"


def not_found(url: str) -> str:
    return f"console.error: Failed to load resource: the server responded with a status of 404 (Not Found) ({url})"


@contextmanager
def signed_in(url: str, key: str, viewport: ViewportSize = LAPTOP, *,
              expected: tuple[str, ...] = ()) -> Iterator[Watched]:
    """The page with ``key`` typed into its key field. The model list is asked for once without a key (a
    401), and again with it: the admin key reads the ledger but calls no model, so a 401 again."""
    refused = (unauthorized(url + "/v1/models"),) * (2 if key == ADMIN else 1)
    with ui(url, viewport, expected=(*refused, *expected)) as browser:
        page = browser.page
        page.wait_for_selector("#error:not([hidden])")
        page.fill("#api-key", key)
        with page.expect_response(url + "/v1/models"):
            page.press("#api-key", "Enter")
        yield browser


@contextmanager
def after_traffic(gateway: GatewayRunner, key: str, view: str, *,
                  missing: tuple[str, ...] = ()) -> Iterator[tuple[str, Watched]]:
    """A gateway that has seen :func:`send_traffic`, and the page open on ``view`` with ``key``; the
    ``missing`` paths are looked up by the test and answer 404."""
    with gateway(CONFIG) as (_, srv):
        send_traffic(srv.url)
        with signed_in(srv.url, key, expected=tuple(not_found(srv.url + m) for m in missing)) as browser:
            open_view(browser.page, view)
            yield srv.url, browser


def loaded(page: Page, status: str) -> None:
    """Wait for the view's list to arrive: each load says "Loading…" at once and "Loaded HH:MM:SS" at the end."""
    page.locator(f"#{status}", has_text="Loaded").wait_for()


def open_view(page: Page, name: str) -> None:
    page.click(f"#tab-{name}")
    loaded(page, f"{name}-status")


def table(page: Page, scope: str) -> list[dict[str, Any]]:
    """Every body row under ``scope``: the text of each cell by column, and the row's data attributes."""
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"{scope} tbody tr",
        """rows => rows.map(r => ({data: {...r.dataset},
            ...Object.fromEntries([...r.querySelectorAll('td')].map(td => [td.dataset.col, td.textContent]))}))""",
    )


def ids(page: Page) -> list[str]:
    """The request ids of the requests table, top to bottom."""
    return [r["data"]["requestId"] for r in table(page, "#requests-list")]


def facts(page: Page, scope: str) -> dict[str, str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"{scope} > dl > dd", "dds => Object.fromEntries(dds.map(d => [d.dataset.fact, d.textContent]))")


def filter_requests(page: Page, pool: str = "", key: str = "", status: str = "") -> None:
    page.fill("#filter-pool", pool)
    page.fill("#filter-key", key)
    page.fill("#filter-status", status)
    page.click("#filter-apply")
    loaded(page, "requests-status")


def listed(url: str, auth: str = ADMIN, **params: str) -> list[dict[str, Any]]:
    return api(url, "/v1/fusion/requests", auth, limit="50", **params)["data"]  # type: ignore[no-any-return]


def status_text(r: dict[str, Any]) -> str:
    return str(r["status"]) + (" " + r["error_code"] if r["error_code"] else "")


# ------------------------------------------------------------------ requests


def test_the_requests_view_lists_and_drills_down_into_what_the_ledger_api_returns(gateway: GatewayRunner) -> None:
    with after_traffic(gateway, ADMIN, "requests", missing=("/v1/fusion/requests/nope",)) as (url, browser):
        page = browser.page
        everything = listed(url)
        pool = api(url, "/v1/fusion/requests/pool-1")
        shaky = api(url, "/v1/fusion/requests/shaky-1")
        tiny = api(url, "/v1/fusion/requests/tiny-1")
        assert page.evaluate("document.activeElement.id") == "requests-title"
        rows = table(page, "#requests-list")
        assert [r["data"]["requestId"] for r in rows] == [r["request_id"] for r in everything] == [
            "bad-body", "bad-key", "shaky-1", "pool-1", "tiny-1", "pt-1"]  # newest first, no baselines
        for row, rec in zip(rows, everything, strict=True):
            assert row["id"] == rec["request_id"]
            assert row["status"] == status_text(rec)
            assert row["key"] == (rec["key"] or "–")
            assert row["model"] == (rec["model"] or "–")
            assert row["mode"] == (rec["mode"] if rec["kind"] == "pool" else rec["kind"])
            assert row["stream"] == ("yes" if rec["stream"] else "no")
            assert row["cost"] == money(rec["cost_usd"])
            assert row["time"] == rec["created"][:19].replace("T", " ")
        assert {r["id"]: r["cost"] for r in rows}["tiny-1"] == "$0.000000029" == money(tiny["cost_usd"])
        assert {r["id"]: r["status"] for r in rows}["bad-key"] == "401 invalid_api_key"
        browser.screenshot("ui-requests-laptop.png")

        # drill down: the pool request's calls in order, where its time went, its verdict, its baseline
        page.click('#requests-list a[href="#requests/pool-1"]')
        page.wait_for_selector('#request-detail article[data-request-id="pool-1"]')
        assert page.evaluate("document.activeElement.id") == "detail-title"
        calls = table(page, "#request-detail article > .table-box")
        assert [(c["data"]["role"], c["model"], c["provider"], c["status"], c["error"], c["attempts"], c["cost"],
                 c["estimated"]) for c in calls] == [
            (c["role"], c["model"], c["provider"], c["status"], c["error_type"] or "–", str(c["attempts"]),
             money(c["cost_usd"]), "yes" if c["usage_estimated"] else "no") for c in pool["calls"]]
        assert [c["role"] for c in calls] == ["member 1", "member 2", "member 3", "judge", "judge"]
        assert [c["tokens"] for c in calls] == [
            f"{c['usage']['prompt_tokens']:,} in, {c['usage']['completion_tokens']:,} out" for c in pool["calls"]]
        shown = facts(page, "#request-detail article")
        by_role = pool["cost_by_role"]
        assert shown["cost"] == money(pool["cost_usd"])
        assert shown["cost_by_role"] == f"members {money(by_role['member'])}, judge {money(by_role['judge'])}"
        assert shown["winner"] == f"{pool['winner']} (member {pool['winner_index'] + 1})"
        assert shown["verdict"] == pool["judge"]["verdict"]["analysis"]
        assert shown["key"] == "beta" and shown["mode"] == "best-of" and shown["status"] == "200"
        breakdown = page.eval_on_selector_all(
            "#request-detail .legend li", "lis => lis.map(l => [l.dataset.stat, Number(l.dataset.value)])")
        assert breakdown == [[k, float(pool["latency_ms"][k])] for k in ("fanout", "judge", "gateway")]
        base = pool["baseline"]
        assert page.get_attribute("#request-detail .baseline", "data-request-id") == base["request_id"]
        base_shown = facts(page, "#request-detail .baseline")
        assert base_shown["model"] == base["model"] == "sim-ft"
        assert base_shown["cost"] == money(base["cost_usd"])
        assert base_shown["comparison"] == {
            "fusion": "the pool's answer was better", "baseline": "the baseline's answer was better",
            "tie": "a tie"}[base["comparison"]]
        base_calls = table(page, "#request-detail .baseline")
        assert [(c["data"]["role"], c["model"], c["cost"]) for c in base_calls] == [
            (c["role"], c["model"], money(c["cost_usd"])) for c in base["calls"]]
        browser.screenshot("ui-request-detail-laptop.png")

        # a pool whose members failed: each call's error type as the ledger has it
        page.click('#requests-list a[href="#requests/shaky-1"]')
        page.wait_for_selector('#request-detail article[data-request-id="shaky-1"]')
        calls = table(page, "#request-detail article > .table-box")
        assert [(c["model"], c["status"], c["error"]) for c in calls] == [
            (c["model"], c["status"], c["error_type"] or "–") for c in shaky["calls"]]
        assert {c["error"] for c in calls} > {"–"}  # at least one member failed, and says how

        # an id typed in: found, or the API's own message
        page.fill("#lookup-id", "tiny-1")
        page.press("#lookup-id", "Enter")
        page.wait_for_selector('#request-detail article[data-request-id="tiny-1"]')
        assert facts(page, "#request-detail article")["cost"] == "$0.000000029"
        assert facts(page, "#request-detail article")["stream"] == "yes"
        page.fill("#lookup-id", "nope")
        page.press("#lookup-id", "Enter")
        page.wait_for_selector("#request-detail .error")
        assert page.inner_text("#request-detail .error") == "no request 'nope' in the ledger"

        page.set_viewport_size(PHONE)
        page.click('#requests-list a[href="#requests/pool-1"]')
        page.wait_for_selector('#request-detail article[data-request-id="pool-1"]')
        assert no_horizontal_scroll(page)
        browser.screenshot("ui-requests-phone.png")


def test_filters_narrow_the_table_to_exactly_the_apis_filtered_list(gateway: GatewayRunner) -> None:
    with after_traffic(gateway, ADMIN, "requests") as (url, browser):
        page = browser.page
        everything = ids(page)
        for pool, key, status in (("best-of-3", "", ""), ("", "alpha", ""), ("", "", "401"),
                                  ("sim-fast", "alpha", "200"), ("", "beta", "400")):
            filter_requests(page, pool, key, status)
            params = {k: v for k, v in (("pool", pool), ("key", key), ("status", status)) if v}
            expected = [r["request_id"] for r in listed(url, **params)]
            assert ids(page) == expected, params
            assert len(expected) < len(everything)
            if not expected:
                assert page.inner_text("#requests-list") == "No request recorded matches."
        # the filters were sent as the API's query parameters, nothing else
        sent = [u for u in browser.urls if "/v1/fusion/requests?" in u]
        assert sent[-1] == f"{url}/v1/fusion/requests?key=beta&status=400&limit=50"
        filter_requests(page)
        assert ids(page) == everything


def test_a_client_key_sees_only_its_own_requests_and_spend(gateway: GatewayRunner) -> None:
    with after_traffic(gateway, ALPHA, "requests", missing=("/v1/fusion/requests/pool-1",)) as (url, browser):
        page = browser.page
        own = listed(url, ALPHA)
        rows = table(page, "#requests-list")
        assert ids(page) == [r["request_id"] for r in own] == ["bad-body", "tiny-1", "pt-1"]
        assert {r["key"] for r in rows} == {"alpha"}
        # another key's request is not there to look up
        page.fill("#lookup-id", "pool-1")
        page.press("#lookup-id", "Enter")
        page.wait_for_selector("#request-detail .error")
        assert page.inner_text("#request-detail .error") == "no request 'pool-1' in the ledger"
        open_view(page, "spend")
        spent = table(page, "#spend-table")
        assert [(r["group"], r["cost"]) for r in spent] == [
            (r["key"], money(r["cost_usd"])) for r in api(url, "/v1/fusion/spend", ALPHA, since="24h")["data"]]
        assert [r["group"] for r in spent] == ["alpha"]


# ------------------------------------------------------------------ spend


def test_the_spend_view_shows_the_apis_exact_spend_per_group_and_its_total(gateway: GatewayRunner) -> None:
    with after_traffic(gateway, ADMIN, "spend") as (url, browser):
        page = browser.page
        for group_by, since in (("key", "24h"), ("pool", "24h"), ("model", "1h"), ("day", "7d"), ("pool", "")):
            page.select_option("#spend-since", since)
            page.select_option("#spend-group", group_by)
            loaded(page, "spend-status")
            params = {"group_by": group_by, **({"since": since} if since else {})}
            spend = api(url, "/v1/fusion/spend", **params)
            count = "calls" if group_by == "model" else "requests"
            rows = table(page, "#spend-table")
            assert [(r["group"], r["count"], r["unknown"], r["cost"]) for r in rows] == [
                (str(r[group_by]), str(r[count]), str(r["unknown_cost"]), money(r["cost_usd"]))
                for r in spend["data"]], params
            total = sum((r["cost_usd"] for r in spend["data"]), Decimal(0))
            assert page.get_attribute("#spend-table tfoot tr", "data-total") == decimal_text(total)
            assert page.inner_text("#spend-table tfoot td[data-col='cost']") == "$" + decimal_text(total)
            assert page.inner_text("#spend-table tfoot td[data-col='count']") == str(
                sum(r[count] for r in spend["data"]))
            if (group_by, since) == ("model", "1h"):
                # the tiny call's 0.000000029 is in sim-tiny's row as the API wrote it
                assert {r["group"]: r["cost"] for r in rows}["sim-tiny"] == "$0.000000029"
                browser.screenshot("ui-spend-laptop.png")
        sent = [u for u in browser.urls if "/v1/fusion/spend" in u]
        assert sent[-1] == f"{url}/v1/fusion/spend?group_by=pool"
        page.set_viewport_size(PHONE)
        assert no_horizontal_scroll(page)
        browser.screenshot("ui-spend-phone.png")


# ------------------------------------------------------------------ no ledger


def test_without_a_ledger_both_views_say_so_and_a_recent_request_can_still_be_looked_up(
    gateway: GatewayRunner,
) -> None:
    with gateway("ledger: none\n" + FAST) as (_, srv):
        url = srv.url
        assert chat(url, "r-1", None, {"model": "sim-fast", "messages": Q}) == 200
        receipt = api(url, "/v1/fusion/requests/r-1")
        expected = (not_found(url + "/v1/fusion/requests?limit=50"),
                    not_found(url + "/v1/fusion/spend?group_by=key&since=24h"))
        with ui(url, PHONE, view="#requests", expected=expected) as browser:
            page = browser.page
            page.wait_for_selector("#requests-off:not([hidden])")
            assert page.inner_text("#requests-off") == (
                "The ledger is off on this gateway (ledger: none in its config): requests are not recorded, so "
                "there is no list to show. A request id can still be looked up among the last requests this "
                "gateway process answered.")
            assert page.locator("#requests-error").is_hidden()
            assert page.locator("#requests-list tr").count() == 0
            page.fill("#lookup-id", "r-1")
            page.press("#lookup-id", "Enter")
            page.wait_for_selector('#request-detail article[data-request-id="r-1"]')
            shown = facts(page, "#request-detail article")
            assert (shown["model"], shown["status"], shown["cost"]) == (
                receipt["model"], str(receipt["status"]), money(receipt["cost_usd"]))
            assert no_horizontal_scroll(page)
            browser.screenshot("ui-requests-off-phone.png")
            page.click("#tab-spend")
            page.wait_for_selector("#spend-off:not([hidden])")
            assert page.inner_text("#spend-off") == (
                "The ledger is off on this gateway (ledger: none in its config): spend is not recorded, so there "
                "is nothing to add up.")
            assert page.locator("#spend-error").is_hidden()
