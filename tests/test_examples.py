"""The example configs shipped in config/examples/ (and inside the package) pass ``check``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "examples"
NAMES = ["anthropic.yaml", "gemini.yaml", "local.yaml", "mixed-pool.yaml", "openai.yaml"]
KEYS = {
    "openai.yaml": {"OPENAI_API_KEY"},
    "anthropic.yaml": {"ANTHROPIC_API_KEY"},
    "gemini.yaml": {"GEMINI_API_KEY"},
    "local.yaml": set(),
    "mixed-pool.yaml": {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"},
}


def test_the_examples_are_the_ones_the_default_config_lists() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == NAMES
    default = (ROOT / "config" / "gateway.yaml").read_text()
    listed = re.findall(r"^#   (\S+\.yaml) ", default, re.M)
    assert sorted(listed) == NAMES
    assert "config/examples/" in default


@pytest.mark.parametrize("name", NAMES)
def test_each_example_passes_check_with_its_keys_set(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = EXAMPLES / name
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for var in KEYS[name]:
        monkeypatch.setenv(var, "test-key")
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK\n")
    config = load_config(str(path))
    assert config.pools, "every example shows a pool"
    # each pool member, judge and baseline is a model of the file (check already said so) and priced
    for model in config.models.values():
        assert model.price is not None, f"{name}: {model.name} has no price"


@pytest.mark.parametrize("name", [n for n in NAMES if KEYS[n]])
def test_without_its_key_an_example_names_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert main(["check", str(EXAMPLES / name)]) == 1
    err = capsys.readouterr().err
    for var in KEYS[name]:
        assert f"environment variable {var} is not set" in err


def test_the_mixed_pool_compares_with_a_fine_tuned_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEYS["mixed-pool.yaml"]:
        monkeypatch.setenv(var, "test-key")
    config = load_config(str(EXAMPLES / "mixed-pool.yaml"))
    pool = config.pools["code-review"]
    providers = {config.models[m].provider for m in pool.members}
    assert {config.providers[p].type for p in providers} == {"openai", "anthropic", "gemini"}
    assert pool.baseline is not None and config.models[pool.baseline.model].upstream.startswith("ft:")
