"""``compare`` as a first-time user meets it: a scorer that fits no reference is called out with the one
that fits, money reads as money, the findings and paths are on stdout, and the gateway's address comes
from the config rather than a silent fixed default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.cli import main
from gateway.compare.report_md import fmt_usd
from tests.conftest import GatewayRunner

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "config" / "datasets" / "arithmetic.jsonl"
DEFAULT = (ROOT / "config" / "gateway.yaml").read_text()


def compare(url: str, out: Path, *extra: str) -> int:
    return main(["compare", "--dataset", str(DATASET), "--pool", "best-of-3", "--baseline", "sim-ft", "--limit", "16",
                 "--judge", "none", "--concurrency", "16", "--url", url, "--out", str(out), *extra])


def test_all_zero_scores_are_called_out_with_the_scorer_that_fits(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with gateway(DEFAULT) as (_, srv):
        assert compare(srv.url, out) == 0  # the default scorer, normalized
        first = capsys.readouterr()
        # the suggestion, taken: answers already in are re-scored, so no request is needed
        assert compare(srv.url, out, "--scorer", "numeric") == 0
        second = capsys.readouterr()
    systems = json.loads((out / "summary.json").read_text())["systems"]
    rates = sorted(round(100 * s["accuracy"]) for s in systems.values())
    assert rates[0] > 0
    spread = f"{rates[0]}%" if rates[0] == rates[-1] else f"{rates[0]}-{rates[-1]}%"
    warning = (
        "every system scored 0% with --scorer normalized: the answers may be right but worded differently from "
        f"the references. With --scorer numeric they score {spread}: run the same command with --scorer numeric "
        "(answers already in are re-scored, not asked again)"
    )
    assert f"compare: warning: {warning}\n" in first.err
    assert "warning" not in second.err
    assert "compare: 0 to do (32 already done in an earlier run)\n" in second.err
    assert json.loads((out / "summary.json").read_text())["warnings"] == []


def test_the_warning_is_in_the_reports_too(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with gateway(DEFAULT) as (_, srv):
        assert compare(srv.url, out, "--scorer", "exact") == 0
    (warning,) = json.loads((out / "summary.json").read_text())["warnings"]
    assert warning.startswith("every system scored 0% with --scorer exact: ")
    assert f"> **Warning:** {warning}." in (out / "report.md").read_text()
    assert '<p class="warning"><strong>Warning:</strong> every system scored 0% with --scorer exact' in (
        out / "report.html"
    ).read_text()


def test_findings_and_paths_go_to_stdout_and_money_reads_as_money(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with gateway(DEFAULT) as (_, srv):
        assert compare(srv.url, out, "--scorer", "numeric") == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    headlines = [c["headline"] for c in summary["comparisons"]]
    assert captured.out.splitlines() == [
        *headlines,
        f"results: {out / 'results.jsonl'}",
        f"report:  {out / 'report.html'}",
        f"         {out / 'report.md'}",
        f"summary: {out / 'summary.json'}",
    ]
    assert headlines[0] not in captured.err
    # summary.json keeps the exact figure; the reports show four significant digits
    mean = summary["systems"]["best-of-3"]["cost"]["mean_usd"]
    assert len(mean.split(".")[1].lstrip("0")) > 4
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert f"| {fmt_usd(mean)} |" in md and f">{fmt_usd(mean)}</td>" in html
    assert mean not in md and mean not in html
    long_money = re.compile(r"\$0\.0*[1-9]\d{4,}")
    assert long_money.findall(md) == [] and long_money.findall(html) == []


@pytest.mark.parametrize(
    ("exact", "shown"),
    [
        ("0.000125752917", "$0.0001258"),
        ("0.00003602", "$0.00003602"),
        ("0.000175030208", "$0.0001750"),
        ("0.99996", "$1.00"),
        ("1234.5678", "$1,234.57"),
        ("0", "$0"),
    ],
)
def test_money_to_four_significant_digits_cents_from_a_dollar(exact: str, shown: str) -> None:
    assert fmt_usd(exact) == shown
    assert fmt_usd(None) == "unknown"


def test_the_url_defaults_to_the_configs_server_address(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOME_UNSET_KEY", raising=False)
    with gateway(DEFAULT) as (_, srv):
        port = urlsplit(srv.url).port
        # only the server section is read: keys the client does not have need not be set
        config = tmp_path / "gateway.yaml"
        config.write_text(
            f"server: {{host: 0.0.0.0, port: {port}}}\n"
            "providers:\n  up: {type: openai, preset: groq, api_key: \"${SOME_UNSET_KEY}\"}\n"
        )
        code = main(["compare", "--dataset", str(DATASET), "--pool", "best-of-3", "--baseline", "sim-ft", "--limit",
                     "2", "--judge", "none", "--scorer", "numeric", "--config", str(config), "--out",
                     str(tmp_path / "out")])
    assert code == 0
    err = capsys.readouterr().err
    assert f"compare: gateway http://127.0.0.1:{port} (server address of {config}; --url to change)\n" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["gateway"] == f"http://127.0.0.1:{port}"


def test_without_a_url_or_a_readable_config_nothing_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.yaml"
    code = main(["compare", "--dataset", str(DATASET), "--pool", "best-of-3", "--baseline", "sim-ft",
                 "--config", str(missing), "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"compare: cannot read the gateway's address from {missing}: give it with --url"
    )
    assert not (tmp_path / "out").exists()
