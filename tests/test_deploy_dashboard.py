"""deploy/grafana: the dashboard's structure (Grafana is not installable here), that every query reads
metrics and labels the gateway really exports, and the provisioning that loads it. The dashboard's
queries are evaluated against a real Prometheus in test_deploy_prometheus.py."""

from __future__ import annotations

import re

import httpx
import pytest
import yaml

from gateway.books.metrics import Metrics
from tests.conftest import run_gateway
from tests.support.deploykit import (
    CLIENT_KEY,
    DEPLOY,
    EVERY_MODE,
    POOLS,
    Query,
    dashboard,
    dashboard_queries,
    drive,
    exposition,
    label_names,
    metric_names,
    rule_queries,
    settle,
)

DASH = dashboard()
PANELS = [p for p in DASH["panels"] if p["type"] != "row"]
VARIABLES = {v["name"]: v for v in DASH["templating"]["list"]}
QUERIES = dashboard_queries()


def contract() -> dict[str, set[str]]:
    """Sample name -> label names, as gateway/books/metrics.py declares them (the contract)."""
    out: dict[str, set[str]] = {}
    for collector in vars(Metrics()).values():
        name = getattr(collector, "_name", None)
        if name is None:
            continue
        labels = set(collector._labelnames)
        kind = collector._type
        if kind == "counter":
            out[f"{name}_total"] = labels
        elif kind == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


def check_names(queries: list[Query], available: dict[str, set[str]]) -> list[str]:
    problems = []
    for q in queries:
        names = metric_names(q.expr)
        if not names and not q.expr.startswith("up{"):
            problems.append(f"{q.where}: reads no gateway metric")
        missing = names - set(available)
        problems.extend(f"{q.where}: {name} does not exist" for name in sorted(missing))
        if missing:
            continue
        known = set().union(*(available.get(n, set()) for n in names)) | {"job", "instance"}
        for label in sorted(label_names(q.expr) - known):
            problems.append(f"{q.where}: label {label!r} is not on {sorted(names)}")
    return problems


# --------------------------------------------------------------------------- structure


def test_dashboard_identity_and_format() -> None:
    assert DASH["uid"] == "fusion-gateway" and DASH["title"] == "fusion-gateway"
    assert isinstance(DASH["schemaVersion"], int) and DASH["schemaVersion"] >= 36
    assert "id" not in DASH or DASH["id"] is None  # provisioned dashboards must not carry a database id
    assert DASH["refresh"] and DASH["time"]["from"].startswith("now-")


def test_panels_have_unique_ids_and_tile_the_grid_without_overlap() -> None:
    ids = [p["id"] for p in DASH["panels"]]
    assert len(ids) == len(set(ids))
    boxes = []
    for p in DASH["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        assert g["h"] > 0 and g["y"] >= 0
        boxes.append((p["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
            assert not overlap, f"panels {a[0]!r} and {b[0]!r} overlap"


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    ds = VARIABLES["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for p in PANELS:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"{p['title']}: no query"
        assert p.get("description"), f"{p['title']}: say what the panel shows"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip()


def test_pool_variable_lists_the_pools_and_selects_all_by_default() -> None:
    pool = VARIABLES["pool"]
    assert pool["type"] == "query" and pool["multi"] and pool["includeAll"]
    assert pool["allValue"] == ".*"  # a regex: every query uses pool=~"$pool"
    assert pool["definition"] == 'label_values(fusion_requests_total{mode!="passthrough"}, pool)'
    assert pool["query"]["query"] == pool["definition"]
    assert pool["current"]["value"] == ["$__all"]


FLEET_WIDE = (
    "fusion_inflight_requests", "fusion_config_", "fusion_unpriced_calls_total", "gen_ai_", "fusion_deployment_",
    "fusion_fallbacks_total", "fusion_refused_requests_total", "fusion_key_cost_usd_total",
)


def test_every_pool_scoped_query_follows_the_pool_variable() -> None:
    labels = contract()
    for q in QUERIES:
        for name in metric_names(q.expr):
            if "pool" not in labels.get(name, set()) or 'mode="passthrough"' in q.expr:
                continue  # fleet-wide panels; direct model calls are not pools
            for selector in re.findall(rf"{name}\{{([^}}]*)\}}", q.expr):
                assert 'pool=~"$pool"' in selector, f"{q.where}: {name} ignores $pool"
    # and the fleet-wide ones are only those
    for q in QUERIES:
        if "$pool" not in q.expr:
            assert all(n.startswith(FLEET_WIDE) for n in metric_names(q.expr)) or 'mode="passthrough"' in q.expr, q


@pytest.mark.parametrize(
    ("what", "needles"),
    [
        ("requests and outcomes per pool", ["fusion_requests_total", "by (pool, outcome)"]),
        ("stage latency p50", ["histogram_quantile(0.5,", "fusion_stage_duration_seconds_bucket"]),
        ("stage latency p95", ["histogram_quantile(0.95,", "fusion_stage_duration_seconds_bucket"]),
        ("member errors and timeouts", ["fusion_member_calls_total", 'outcome=~"error|timeout"']),
        ("judge fallbacks", ["fusion_judge_verdicts_total", "fallback"]),
        ("fusion cost per request", ['role=~"member|judge"', "fusion_requests_total"]),
        ("baseline cost per request", ['role="baseline"', "fusion_baseline_cost_ratio_count"]),
        ("cost ratio", ["fusion_baseline_cost_ratio_bucket"]),
        ("latency ratio", ["fusion_baseline_latency_ratio_bucket"]),
        ("win/tie/loss", ["fusion_baseline_comparisons_total", "by (pool, result)"]),
        ("quorum misses", ["fusion_quorum_misses_total"]),
        ("gateway overhead", ["fusion_stage_duration_seconds_bucket", "pool, stage"]),
        ("calls per deployment", ["fusion_deployment_calls_total", "model, deployment, outcome"]),
        ("ejected deployments", ["fusion_deployment_ejected", "model, deployment"]),
        ("ejections", ["fusion_deployment_ejections_total"]),
        ("fallbacks", ["fusion_fallbacks_total", "reason"]),
        ("refusals by reason", ["fusion_refused_requests_total", "by (status, reason)"]),
        ("spend by key", ["fusion_key_cost_usd_total", "by (key)"]),
        ("time to first chunk of streams", ["fusion_time_to_first_chunk_seconds_bucket", "by (pool, le)"]),
        ("upstream time to first chunk", ["gen_ai_client_operation_time_to_first_chunk_seconds_bucket"]),
        ("the latency objective", ["fusion_request_duration_seconds_bucket", 'le="8.0"']),
    ],
)
def test_dashboard_shows(what: str, needles: list[str]) -> None:
    assert any(all(n in q.expr for n in needles) for q in QUERIES), f"no query shows {what}"


def test_queries_read_only_metrics_and_labels_the_gateway_declares() -> None:
    """Static: against gateway/books/metrics.py, so a renamed metric or label fails here first."""
    problems = check_names([*QUERIES, *rule_queries()], contract())
    assert not problems, "\n".join(problems)


def test_provisioning_loads_the_dashboard_from_prometheus() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())
    assert ds["apiVersion"] == 1
    [source] = ds["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] and source["access"] == "proxy"
    dashboards = yaml.safe_load((prov / "dashboards" / "fusion.yaml").read_text())
    assert dashboards["apiVersion"] == 1
    [provider] = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


# --------------------------------------------------------------------------- against a live gateway


@pytest.fixture(scope="module")
def scrape() -> str:
    """/metrics of a gateway after traffic through every mode, faults and baseline samples included."""
    with run_gateway(EVERY_MODE) as (_, srv):
        summary = drive(srv.url, per_name=3)
        assert summary["status"].get("200", 0) > 0
        # The balancer breaks ties between "spread"'s two deployments at random, so the few calls the
        # traffic makes to it may all land on the working one: a dozen more try the failing one (and get
        # it ejected) all but once in 4,096 runs.
        for _ in range(12):
            httpx.post(f"{srv.url}/v1/chat/completions", headers={"authorization": f"Bearer {CLIENT_KEY}"},
                       json={"model": "spread", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        settle(srv.url)  # baseline samples and comparisons finish in the background
        return httpx.get(f"{srv.url}/metrics").text


def series(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of ``name`` that moved (series known from the config exist at 0 from start)."""
    from prometheus_client.parser import text_string_to_metric_families

    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples if s.name == name and s.value]


def test_the_scenario_produces_every_fault_the_dashboard_and_alerts_are_about(scrape: str) -> None:
    outcomes = {(s["pool"], s["outcome"]) for s in series(scrape, "fusion_requests_total")}
    assert {("best", "degraded"), ("debated", "degraded"), ("dead", "error")} <= outcomes
    # merged's slow member is cancelled by design (quorum 2, then the grace): whole answers, not degraded
    assert ("merged", "ok") in outcomes and ("merged", "degraded") not in outcomes
    members = {(s["model"], s["outcome"]) for s in series(scrape, "fusion_member_calls_total")}
    assert {("a", "ok"), ("broken", "error"), ("hang", "timeout"), ("late", "cancelled")} <= members
    verdicts = {(s["pool"], s["outcome"]) for s in series(scrape, "fusion_judge_verdicts_total")}
    assert {("best", "picked"), ("merged", "picked"), ("fallback", "fallback")} <= verdicts
    assert {s["pool"] for s in series(scrape, "fusion_quorum_misses_total")} >= {"best", "dead"}
    assert {s["model"] for s in series(scrape, "fusion_unpriced_calls_total")} == {"free"}
    stages = {s["stage"] for s in series(scrape, "fusion_stage_duration_seconds_count")}
    assert stages == {"fanout", "judge", "debate_round", "gateway"}
    fused = {s["pool"] for s in series(scrape, "fusion_requests_total") if s["mode"] != "passthrough"}
    assert fused == set(POOLS)


def test_every_metric_the_dashboard_and_the_rules_read_is_exported(scrape: str) -> None:
    """Dynamic: after real traffic, every series family the dashboard and the alerts read exists."""
    problems = check_names([*QUERIES, *rule_queries()], exposition(scrape))
    assert not problems, "\n".join(problems)


def test_the_scenario_ejects_a_deployment_and_takes_a_fallback(scrape: str) -> None:
    ejected = {(s["model"], s["deployment"]) for s in series(scrape, "fusion_deployment_ejections_total")}
    assert ejected == {("spread", "sim/flaky")}
    fallbacks = {(s["model"], s["fallback"], s["reason"]) for s in series(scrape, "fusion_fallbacks_total")}
    assert fallbacks == {("stepped", "a", "failure")}
