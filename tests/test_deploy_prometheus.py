"""deploy/prometheus for real: promtool checks the config and the rules and runs the rules' unit tests;
then a real Prometheus, configured from deploy/prometheus/prometheus.yml, scrapes a running gateway
through every mode, and every dashboard query, recording rule and alert is evaluated through its API."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_gateway
from tests.support.deploykit import (
    DEPLOY,
    EVERY_MODE,
    POOLS,
    Prometheus,
    dashboard,
    dashboard_queries,
    drive,
    finite,
    grafana_to_promql,
    prometheus_server,
    settle,
    which,
)

PROM = DEPLOY / "prometheus"
RULES = yaml.safe_load((PROM / "alerts.yml").read_text())
ALERTS = [r for g in RULES["groups"] for r in g["rules"] if "alert" in r]
RECORDS = [r for g in RULES["groups"] for r in g["rules"] if "record" in r]
UNIT_TESTS = sorted((PROM / "tests").glob("*.yml"))


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    binary = which("promtool")
    assert binary is not None, "promtool is not installed (tests/run.sh installs it)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_config_and_the_rules() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(ALERTS) + len(RECORDS)} rules found" in rules.stdout


def test_rule_unit_tests_pass() -> None:
    assert UNIT_TESTS
    done = promtool("test", "rules", *(str(p.relative_to(PROM)) for p in UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_rule_unit_tests_would_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: with one threshold changed they fail."""
    (tmp_path / "tests").mkdir()
    text = (PROM / "alerts.yml").read_text()
    assert text.count("ratio_rate5m > 0.10") == 1
    (tmp_path / "alerts.yml").write_text(text.replace("ratio_rate5m > 0.10", "ratio_rate5m > 0.25"))
    (tmp_path / "tests" / "members.yml").write_text((PROM / "tests" / "members.yml").read_text())
    done = promtool("test", "rules", "tests/members.yml", cwd=tmp_path)
    assert done.returncode != 0 and "FusionMemberErrorRateHigh" in done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing_and_every_recording_rule_evaluated() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    evaluated = ""
    for path in UNIT_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../alerts.yml"], path.name
        for test in spec["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
            evaluated += " ".join(case["expr"] for case in test.get("promql_expr_test", []))
    names = {a["alert"] for a in ALERTS}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"
    for record in RECORDS:
        assert record["record"] in evaluated, f"{record['record']} has no promql_expr_test"


def test_alerts_carry_severity_summary_description_and_a_for_duration() -> None:
    for alert in ALERTS:
        assert alert["labels"]["severity"] in ("critical", "warning", "info"), alert["alert"]
        assert {"summary", "description"} <= set(alert["annotations"]), alert["alert"]
        assert alert.get("for"), f"{alert['alert']}: fires on one bad evaluation"


# --------------------------------------------------------------------------- a real Prometheus


def prometheus_config(gateway_port: int, workdir: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, pointed at the test's gateway and scraping every second."""
    config: dict[str, Any] = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROM / f) for f in config["rule_files"]]
    [job] = config["scrape_configs"]
    [static] = job["static_configs"]
    assert static["targets"] == ["gateway:8000"]
    static["targets"] = [f"127.0.0.1:{gateway_port}"]
    return config


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Prometheus that has scraped two rounds of traffic through every mode (two, so that every
    counter has grown between scrapes and every rate() is non-zero)."""
    workdir = tmp_path_factory.mktemp("prometheus")
    with run_gateway(EVERY_MODE) as (_, srv), prometheus_server(prometheus_config(srv.port, workdir), workdir) as prom:
        for seed in (1, 2):
            drive(srv.url, per_name=3, seed=seed)
            # the baseline samples finish in the background: wait for them, then for a scrape of them
            for name, total in settle(srv.url).items():
                # (sums of float costs: Prometheus adds them in another order)
                prom.wait_for(f"sum({name})", lambda r, n=total: bool(r) and float(r[0]["value"][1]) >= n * (1 - 1e-9))
        yield prom


@pytest.mark.services
def test_prometheus_scrapes_the_gateway_with_the_deploy_job(prometheus: Prometheus) -> None:
    [target] = prometheus.targets()
    assert target["labels"]["job"] == "fusion-gateway" and target["health"] == "up"
    assert target["scrapeUrl"].endswith("/metrics")


@pytest.mark.services
def test_pool_variable_query_lists_every_pool(prometheus: Prometheus) -> None:
    definition = next(v for v in dashboard()["templating"]["list"] if v["name"] == "pool")["definition"]
    metric, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
    assert sorted(prometheus.label_values(label, metric)) == sorted(POOLS)


@pytest.mark.services
@pytest.mark.parametrize("query", dashboard_queries(), ids=lambda q: q.where)
def test_dashboard_query_returns_data(prometheus: Prometheus, query: Any) -> None:
    expr = grafana_to_promql(query.expr)
    result = prometheus.query(expr)
    assert result, f"{query.where}: no data for {expr}"
    assert finite(result), f"{query.where}: only NaN/Inf for {expr}: {result}"


@pytest.mark.services
@pytest.mark.parametrize("pool", POOLS)
def test_requests_panel_shows_each_pool_on_its_own(prometheus: Prometheus, pool: str) -> None:
    panel = next(p for p in dashboard()["panels"] if p["title"] == "Requests by pool and outcome")
    result = prometheus.query(grafana_to_promql(panel["targets"][0]["expr"], pool=pool))
    assert {s["metric"]["pool"] for s in result} == {pool}


@pytest.mark.services
def test_recording_rules_produce_series_and_no_rule_fails(prometheus: Prometheus) -> None:
    for record in RECORDS:
        prometheus.wait_for(record["record"], bool, timeout=15)
    groups = prometheus.rules()
    assert {g["name"] for g in groups} == {g["name"] for g in RULES["groups"]}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


@pytest.mark.services
def test_recorded_ratios_match_the_scenario(prometheus: Prometheus) -> None:
    """The member that always fails has a failure ratio of 1, the judge that always fails a fallback
    ratio of 1, and healthy members 0: the rules compute what they claim to."""

    def by(expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(s["metric"][k] for k in labels): float(s["value"][1]) for s in prometheus.query(expr)}

    failed = by("pool_model:fusion_member_calls_failed:ratio_rate5m", "pool", "model")
    assert failed[("best", "broken")] == 1.0 and failed[("debated", "hang")] == 1.0
    assert failed[("best", "a")] == 0.0  # a member with no failure at all: 0, not missing
    fallback = by("pool:fusion_judge_verdicts_fallback:ratio_rate5m", "pool")
    assert fallback[("fallback",)] == 1.0 and fallback[("best",)] == 0.0 and fallback[("merged",)] == 0.0
    quorum = by("pool:fusion_quorum_misses:ratio_rate5m", "pool")
    assert quorum[("best",)] == 1.0 and quorum[("fallback",)] == 0.0
    overhead = by("pool:fusion_gateway_overhead_seconds:p95_rate5m", "pool")
    # seconds, not milliseconds: the gateway's own time per request is well under a second (how far
    # under depends on this machine's load, which is the alert's business, not this test's)
    assert overhead and all(0 < v < 1 for v in overhead.values()), overhead
