"""The shipped dataset on the default config: the outcome is known in advance, and compare must find it.

Three members, each right 70% of the time, and a judge that picks the majority answer: best-of-3 is right
about 84% of the time, more than any one member, at many times the cost of one call."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from gateway.cli import main
from gateway.compare.dataset import load_dataset
from tests.conftest import GatewayRunner

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "config" / "datasets" / "arithmetic.jsonl"


def test_the_shipped_dataset_is_what_its_script_writes(tmp_path: Path) -> None:
    script = ROOT / "config" / "datasets" / "make_arithmetic.py"
    copy = tmp_path / "make_arithmetic.py"
    copy.write_text(script.read_text())
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True)
    assert (tmp_path / "arithmetic.jsonl").read_bytes() == DATASET.read_bytes()
    items = load_dataset(DATASET)
    assert len(items) == 240 and len({i.key for i in items}) == 240
    assert all(i.reference is not None and i.reference.startswith("The answer is ") for i in items)


def test_best_of_3_beats_every_member_on_the_shipped_dataset(gateway: GatewayRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with gateway((ROOT / "config" / "gateway.yaml").read_text()) as (_, srv):
        code = main(
            [
                "compare",
                "--dataset",
                str(DATASET),
                "--pool",
                "best-of-3",
                "--pool",
                "sim-fast",
                "--pool",
                "sim-balanced",
                "--pool",
                "sim-slow",
                "--baseline",
                "sim-ft",
                "--scorer",
                "numeric",
                "--judge",
                "none",
                "--concurrency",
                "64",
                "--url",
                srv.url,
                "--out",
                str(out),
            ]
        )
    assert code == 0
    systems = json.loads((out / "summary.json").read_text())["systems"]
    best = systems["best-of-3"]
    assert best["scored"] == 240 and best["failed"] == 0
    for member in ("sim-fast", "sim-balanced", "sim-slow"):
        assert best["correct"] > systems[member]["correct"], member
    # Above 70% beyond sampling error: the whole 95% Wilson interval lies above it.
    assert best["accuracy_ci95"][0] > 0.70
    # At several times the cost of one call: of any member, and of the fine-tuned model.
    mean = Decimal(best["cost"]["mean_usd"])
    for name in ("sim-fast", "sim-balanced", "sim-slow", "sim-ft"):
        assert mean > 3 * Decimal(systems[name]["cost"]["mean_usd"]), name
