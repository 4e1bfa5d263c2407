"""Config loading: typed, strict, with errors that name file, line and key path."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.wire.errors import ConfigError

BASE = """\
server: {host: 127.0.0.1, port: 8000}
providers:
  openai: {type: openai, base_url: https://api.openai.com/v1, api_key: "${OPENAI_API_KEY}"}
  local:  {type: openai, base_url: http://127.0.0.1:11434/v1}
  sim:    {type: simulator}
models:
  gpt-4o-mini: {provider: openai, price: {input: 0.15, output: 0.60, cached_input: 0.075}}
  support-ft:  {provider: openai, model: "ft:gpt-4o-mini:acme:support:abc123", price: {input: 0.30, output: 1.20}}
  sim-fast:    {provider: sim, model: fast, price: {input: 0.10, output: 0.40}}
pools: {}
"""
ENV = {"OPENAI_API_KEY": "sk-test"}


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config/gateway.yaml", environ=ENV if env is None else env)
    return info.value.message


def test_the_documented_shape_loads_with_defaults_filled_in() -> None:
    cfg = parse_config(BASE, "config/gateway.yaml", environ=ENV)
    assert cfg.models["gpt-4o-mini"].upstream == "gpt-4o-mini"  # model: defaults to the key
    assert cfg.models["support-ft"].upstream == "ft:gpt-4o-mini:acme:support:abc123"
    price = cfg.models["gpt-4o-mini"].price
    assert price is not None and price.cached == Decimal("0.075") and price.input == Decimal("0.15")
    assert cfg.models["sim-fast"].price is not None and cfg.models["sim-fast"].price.cached == Decimal("0.10")
    assert cfg.providers["openai"].api_key.get_secret_value() == "sk-test"  # type: ignore[union-attr]
    assert cfg.names() == ["gpt-4o-mini", "support-ft", "sim-fast"]


def test_unknown_provider_names_file_line_path_and_the_known_ones() -> None:
    text = BASE.replace("gpt-4o-mini: {provider: openai", "gpt-4o-mini: {provider: opena")
    assert error_of(text) == (
        "config/gateway.yaml:7: models.gpt-4o-mini.provider: unknown provider 'opena' "
        "(did you mean 'openai'? known: openai, local, sim)"
    )


def test_unknown_keys_are_errors_at_their_line() -> None:
    text = BASE.replace("server: {host: 127.0.0.1, port: 8000}", "server: {host: 127.0.0.1, port: 8000, prot: 1}")
    assert error_of(text) == "config/gateway.yaml:1: server.prot: unknown key (did you mean 'port'?)"
    text = BASE.replace("  sim:    {type: simulator}", "  sim:    {type: simulator, sed: 3}")
    assert error_of(text) == "config/gateway.yaml:5: providers.sim.sed: unknown key (did you mean 'seed'?)"
    text = BASE.replace("  sim:    {type: simulator}", "  sim:    {type: simulator, xyz: 3}")
    assert error_of(text) == "config/gateway.yaml:5: providers.sim.xyz: unknown key"
    # every top-level section, the response cache's included, is checked the same way
    assert error_of(BASE + "cache: {enabeld: true}\n") == (
        "config/gateway.yaml:11: cache.enabeld: unknown key (did you mean 'enabled'?)")


def test_missing_environment_variable_is_named() -> None:
    assert error_of(BASE, env={}) == (
        "config/gateway.yaml:3: providers.openai.api_key: environment variable OPENAI_API_KEY is not set"
    )


def test_environment_defaults_and_escapes() -> None:
    text = textwrap.dedent("""\
        server: {port: "${PORT:-8123}"}
        providers:
          p: {type: openai, base_url: "${BASE:-http://127.0.0.1:9/v1}", headers: {x-literal: "$${NOT_A_VAR}"}}
        models: {m: {provider: p}}
        """)
    cfg = parse_config(text, "c.yaml", environ={})
    assert cfg.server.port == 8123
    assert cfg.providers["p"].base_url == "http://127.0.0.1:9/v1"  # type: ignore[union-attr]
    assert cfg.providers["p"].headers == {"x-literal": "${NOT_A_VAR}"}  # type: ignore[union-attr]
    cfg = parse_config(text, "c.yaml", environ={"PORT": "9000"})
    assert cfg.server.port == 9000


def test_wrong_types_and_missing_keys() -> None:
    text = BASE.replace("price: {input: 0.30, output: 1.20}", "price: {input: cheap, output: 1.20}")
    assert error_of(text) == ("config/gateway.yaml:8: models.support-ft.price.input: Input should be a valid decimal")
    text = BASE.replace("  local:  {type: openai, base_url: http://127.0.0.1:11434/v1}", "  local:  {type: openai}")
    assert error_of(text) == "config/gateway.yaml:4: providers.local.base_url: required key is missing"
    text = BASE.replace("  sim:    {type: simulator}", "  sim:    {type: simulatr}")
    assert error_of(text) == (
        "config/gateway.yaml:5: providers.sim.type: unknown provider type 'simulatr' "
        "(did you mean 'simulator'? known: openai, anthropic, gemini, simulator)"
    )


def test_invalid_yaml_and_duplicate_keys_name_the_line() -> None:
    assert error_of("server: {host: [1, 2}\n").startswith("config/gateway.yaml:1: invalid YAML:")
    text = BASE + "models: {}\n"
    assert error_of(text) == "config/gateway.yaml:11: models: duplicate key"


def test_several_errors_are_all_reported() -> None:
    text = BASE.replace("{provider: sim,", "{provider: simm,").replace(
        "{provider: openai, model", "{provider: x, model"
    )
    assert error_of(text).splitlines() == [
        "config/gateway.yaml:8: models.support-ft.provider: unknown provider 'x' (known: openai, local, sim)",
        "config/gateway.yaml:9: models.sim-fast.provider: unknown provider 'simm' "
        "(did you mean 'sim'? known: openai, local, sim)",
    ]


def test_every_error_of_a_file_in_one_pass_schema_and_references_together() -> None:
    # A schema error used to hide the cross-reference errors until it was fixed and check ran again.
    text = POOLS.replace("port: 8000}", "port: 99999}").replace(
        "  sim:    {type: simulator}", "  sim:    {type: simulator, sed: 1}"
    ).replace("{provider: sim,", "{provider: simm,").replace(
        "[gpt-4o-mini, sim-fast]", "[gpt-4o-mni, sim-fast]"
    ).replace("quorum: 2", "quorum: two\n    judg: {}") + "auth: {keys: [{name: a, key: k, pools: [reveiw]}]}\n"
    assert error_of(text).splitlines() == [
        "config/gateway.yaml:1: server.port: Input should be less than or equal to 65535",
        "config/gateway.yaml:5: providers.sim.sed: unknown key (did you mean 'seed'?)",
        "config/gateway.yaml:9: models.sim-fast.provider: unknown provider 'simm' "
        "(did you mean 'sim'? known: openai, local, sim)",
        "config/gateway.yaml:13: pools.review.members[0]: unknown model 'gpt-4o-mni' "
        "(did you mean 'gpt-4o-mini'? known: gpt-4o-mini, support-ft, sim-fast)",
        "config/gateway.yaml:15: pools.review.quorum: Input should be a valid integer, unable to parse string as an "
        "integer",
        "config/gateway.yaml:16: pools.review.judg: unknown key (did you mean 'judge'?)",
        "config/gateway.yaml:17: auth.keys[0].pools[0]: unknown pool 'reveiw' (did you mean 'review'? known: review)",
    ]


def test_an_unset_variable_is_reported_once_not_again_by_what_it_empties() -> None:
    text = BASE.replace("http://127.0.0.1:11434/v1", '"${LOCAL_URL}"').replace("port: 8000}", "port: 99999}")
    assert error_of(text).splitlines() == [
        "config/gateway.yaml:1: server.port: Input should be less than or equal to 65535",
        "config/gateway.yaml:4: providers.local.base_url: environment variable LOCAL_URL is not set",
    ]


def test_link_local_and_metadata_base_urls_are_refused_unless_allowed() -> None:
    text = BASE.replace("http://127.0.0.1:11434/v1", "http://169.254.169.254/latest")
    assert error_of(text) == (
        "config/gateway.yaml:4: providers.local: base_url refused: 169.254.169.254 is a link-local address "
        "(cloud metadata services live there); set allow_link_local: true if you mean it"
    )
    allowed = text.replace("/latest}", "/latest, allow_link_local: true}")
    assert parse_config(allowed, "c.yaml", environ=ENV).providers["local"].base_url == "http://169.254.169.254/latest"  # type: ignore[union-attr]
    text = BASE.replace("http://127.0.0.1:11434/v1", '"http://[fe80::1]:8080/v1"')
    assert "is a link-local address" in error_of(text)
    # loopback and private ranges stay allowed: local vLLM / Ollama are normal
    for url in ("http://10.0.0.5:8000/v1", "http://192.168.1.9/v1", "http://localhost:11434/v1"):
        parse_config(BASE.replace("http://127.0.0.1:11434/v1", url), "c.yaml", environ=ENV)


def test_headers_and_keys_that_could_not_be_sent_are_config_errors() -> None:
    """A key read from a file with its line break, or a header that would split the request head, is
    refused at load with its line, not found at the first request."""
    local = "http://127.0.0.1:11434/v1}"
    assert error_of(BASE, {"OPENAI_API_KEY": "sk-test\n"}) == (
        "config/gateway.yaml:3: providers.openai.api_key: api_key must be one line of ASCII "
        "(a key read from a file often ends in a line break)"
    )
    bad_value = BASE.replace(local, 'http://127.0.0.1:11434/v1, headers: {x-team: "a\\r\\nx-admin: yes"}}')
    assert "providers.local.headers: header 'x-team': the value must be one line of ASCII" in error_of(bad_value)
    bad_name = BASE.replace(local, 'http://127.0.0.1:11434/v1, headers: {"x team": a}}')
    assert "header name 'x team' is not a valid HTTP header name" in error_of(bad_name)
    framing = BASE.replace(local, "http://127.0.0.1:11434/v1, headers: {Content-Length: '5'}}")
    assert "header 'Content-Length' is set by the gateway for each request" in error_of(framing)
    fine = BASE.replace(local, "http://127.0.0.1:11434/v1, headers: {User-Agent: team-a/1, x-org: acme}}")
    assert parse_config(fine, "c.yaml", environ=ENV).providers["local"].headers == {  # type: ignore[union-attr]
        "User-Agent": "team-a/1", "x-org": "acme"}


POOLS = BASE.replace(
    "pools: {}\n",
    """\
pools:
  review:
    mode: best-of
    members: [gpt-4o-mini, sim-fast]
    judge: {model: gpt-4o-mini}
    quorum: 2
""",
)


def test_pool_cross_references_are_checked() -> None:
    cfg = parse_config(POOLS, "config/gateway.yaml", environ=ENV)
    assert cfg.pools["review"].effective_quorum == 2
    assert cfg.names()[-1] == "review"
    assert error_of(POOLS.replace("[gpt-4o-mini, sim-fast]", "[gpt-4o-mini, nope]")) == (
        "config/gateway.yaml:13: pools.review.members[1]: unknown model 'nope' "
        "(known: gpt-4o-mini, support-ft, sim-fast)"
    )
    assert error_of(POOLS.replace("quorum: 2", "quorum: 3")) == (
        "config/gateway.yaml:15: pools.review.quorum: quorum 3 exceeds the 2 members"
    )
    assert error_of(POOLS.replace("judge: {model: gpt-4o-mini}", "judge: {model: review}")) == (
        "config/gateway.yaml:14: pools.review.judge.model: 'review' is a pool; a judge must be a model "
        "(no pool inside a pool)"
    )


def test_a_pool_cannot_contain_a_pool_or_itself() -> None:
    text = POOLS + "  outer:\n    mode: merge\n    members: [review, sim-fast]\n    judge: {model: sim-fast}\n"
    assert error_of(text) == (
        "config/gateway.yaml:18: pools.outer.members[0]: 'review' is a pool; a member must be a model "
        "(no pool inside a pool)"
    )
    selfref = POOLS.replace("[gpt-4o-mini, sim-fast]", "[review, sim-fast]")
    assert "'review' is a pool; a member must be a model" in error_of(selfref)


def test_pool_without_judge_and_bad_members_count() -> None:
    text = POOLS.replace("    judge: {model: gpt-4o-mini}\n", "")
    assert error_of(text) == (
        "config/gateway.yaml:11: pools.review: a judge is required when a pool has more than one member"
    )
    text = POOLS.replace("[gpt-4o-mini, sim-fast]", "[]").replace("    quorum: 2\n", "")
    assert (
        error_of(text)
        == "config/gateway.yaml:13: pools.review.members: at least 1 member is needed (mode: best-of)"
    )


def test_default_config_loads_and_check_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config("config/gateway.yaml")
    assert {p.mode for p in cfg.pools.values()} == {"best-of", "merge", "debate", "cascade"}
    assert all(p.type == "simulator" for p in cfg.providers.values())  # offline, no key
    assert main(["check", "config/gateway.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config/gateway.yaml: OK\n")
    assert "best-of-3        best-of" in out


def test_check_fails_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("provider: sim,", "provider: nope,"))
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"{bad}:9: models.sim-fast.provider: unknown provider 'nope' (known: openai, local, sim)"
    assert main(["check", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read config file" in capsys.readouterr().err


def test_an_unquoted_reference_in_flow_style_says_how_to_fix_it() -> None:
    # YAML's own message blames the '{' without saying that the ${...} is the cause.
    text = BASE.replace('api_key: "${OPENAI_API_KEY}"', "api_key: ${OPENAI_API_KEY}")
    assert error_of(text) == (
        "config/gateway.yaml:3: invalid YAML: expected ',' or '}', but got '{'; an unquoted ${OPENAI_API_KEY} "
        'inside {...} or [...] is not valid YAML: quote it ("${OPENAI_API_KEY}") or use block style, one key per line'
    )
    text = BASE.replace("pools: {}", "pools: {}\nauth: {keys: [{name: a, key: ${K}}]}")
    assert error_of(text).endswith('an unquoted ${K} inside {...} or [...] is not valid YAML: quote it ("${K}") '
                                   "or use block style, one key per line")
    # the block style needs no quotes
    assert parse_config(BASE.replace("pools: {}", "auth:\n  admin_key: ${K}"), "c.yaml", environ={**ENV, "K": "k"})
