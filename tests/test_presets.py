"""``type: openai`` presets, and the config of the native providers: defaults filled in, every field
overridable, mistakes reported with file, line and key path."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from gateway.config import parse_config
from gateway.config.presets import PRESETS
from gateway.config.providers import AnthropicProviderConfig, GeminiProviderConfig, OpenAIProviderConfig
from gateway.config.server import ServerConfig
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import FakeUpstream, completion, json_reply

KNOWN = "openrouter, together, groq, mistral, deepseek, fireworks, vllm, ollama, llamacpp"


def provider(text: str) -> object:
    return parse_config("providers:\n" + text, "c.yaml", environ={}).providers["p"]


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config("models: {}\nproviders:\n" + text, "config/gateway.yaml", environ={})
    return info.value.message


@pytest.mark.parametrize(
    ("preset", "url"),
    [
        ("openrouter", "https://openrouter.ai/api/v1"),
        ("together", "https://api.together.xyz/v1"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("mistral", "https://api.mistral.ai/v1"),
        ("deepseek", "https://api.deepseek.com/v1"),
        ("fireworks", "https://api.fireworks.ai/inference/v1"),
        ("vllm", "http://127.0.0.1:8001/v1"),
        ("ollama", "http://127.0.0.1:11434/v1"),
        ("llamacpp", "http://127.0.0.1:8080/v1"),
    ],
)
def test_presets_fill_in_the_base_url(preset: str, url: str) -> None:
    key = ", api_key: sk-x" if PRESETS[preset].needs_key else ""
    cfg = provider(f"  p: {{type: openai, preset: {preset}{key}}}\n")
    assert isinstance(cfg, OpenAIProviderConfig) and cfg.base_url == url and cfg.preset == preset


def test_every_field_overrides_the_preset() -> None:
    cfg = provider(
        "  p: {type: openai, preset: vllm, base_url: 'http://10.0.0.7:9000/v1/', api_key: k,"
        " headers: {x-team: a}, max_connections: 8}\n"
    )
    assert isinstance(cfg, OpenAIProviderConfig)
    assert (cfg.base_url, cfg.headers, cfg.max_connections) == ("http://10.0.0.7:9000/v1", {"x-team": "a"}, 8)
    assert cfg.api_key is not None and cfg.api_key.get_secret_value() == "k"


def test_unknown_preset_names_the_known_ones_at_its_line() -> None:
    assert error_of("  p:\n    type: openai\n    preset: grok\n") == (
        f"config/gateway.yaml:5: providers.p.preset: unknown preset 'grok' (did you mean 'groq'? known: {KNOWN})"
    )


def test_cloud_presets_need_a_key_local_ones_do_not() -> None:
    assert error_of("  p: {type: openai, preset: groq}\n") == (
        "config/gateway.yaml:3: providers.p: preset 'groq' needs an api_key (sent as 'Authorization: Bearer <key>')"
    )
    assert error_of('  p: {type: openai, preset: together, api_key: ""}\n').startswith(
        "config/gateway.yaml:3: providers.p: preset 'together' needs an api_key"
    )
    provider("  p: {type: openai, preset: groq, headers: {Authorization: Bearer sk-x}}\n")  # a header will do
    provider("  p: {type: openai, preset: ollama}\n")
    # without a preset, base_url stays required
    assert error_of("  p: {type: openai}\n") == "config/gateway.yaml:3: providers.p.base_url: required key is missing"


def test_a_local_preset_sends_no_key_and_openrouter_headers_go_through(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    fake.default = json_reply(completion("ok"))
    config = f"""
providers:
  local: {{type: openai, preset: llamacpp, base_url: '{fake.url}/v1'}}
  router:
    type: openai
    preset: openrouter
    base_url: '{fake.url}/v1'
    api_key: sk-or-v1-0123456789
    headers: {{HTTP-Referer: 'https://app.example', X-Title: Example App}}
models:
  small: {{provider: local}}
  routed: {{provider: router, model: 'meta-llama/llama-3.3-70b-instruct'}}
"""
    with gateway(config) as (_, srv):
        client = sdk(srv.url)
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
        client.chat.completions.create(model="routed", messages=[{"role": "user", "content": "hi"}])
    (local,) = fake.requests_for("small")
    (routed,) = fake.requests_for("meta-llama/llama-3.3-70b-instruct")
    assert "authorization" not in local.headers
    assert routed.headers["authorization"] == "Bearer sk-or-v1-0123456789"
    assert routed.headers["http-referer"] == "https://app.example" and routed.headers["x-title"] == "Example App"


def test_native_provider_defaults_and_checks() -> None:
    an = provider("  p: {type: anthropic, api_key: sk-ant-x}\n")
    assert isinstance(an, AnthropicProviderConfig)
    assert (an.base_url, an.anthropic_version, an.max_tokens) == ("https://api.anthropic.com/v1", "2023-06-01", 4096)
    ge = provider("  p: {type: gemini, api_key: AIza-x}\n")
    assert isinstance(ge, GeminiProviderConfig) and ge.base_url == "https://generativelanguage.googleapis.com/v1beta"
    # the public APIs need a key; a self-hosted proxy may not
    assert error_of("  p: {type: anthropic}\n") == (
        "config/gateway.yaml:3: providers.p: api.anthropic.com needs an api_key (sent as 'x-api-key')"
    )
    assert error_of("  p: {type: gemini}\n") == (
        "config/gateway.yaml:3: providers.p: generativelanguage.googleapis.com needs an api_key "
        "(sent as 'x-goog-api-key')"
    )
    provider("  p: {type: anthropic, base_url: 'http://127.0.0.1:4000/v1'}\n")
    assert error_of("  p: {type: anthropic, api_key: k, max_tokens: 0}\n") == (
        "config/gateway.yaml:3: providers.p.max_tokens: Input should be greater than or equal to 1"
    )
    assert (
        error_of("  p: {type: gemini, api_key: k, preset: groq}\n")
        == "config/gateway.yaml:3: providers.p.preset: unknown key"
    )
    assert "base_url refused" in error_of(
        "  p: {type: gemini, api_key: k, base_url: 'http://169.254.169.254/v1beta'}\n"
    )


def test_no_preset_points_at_the_gateways_own_default_port() -> None:
    # A gateway started with defaults next to a local server started with defaults would call itself.
    own = ServerConfig().port
    clashes = [name for name, p in PRESETS.items() if urlsplit(p.base_url).hostname == "127.0.0.1"
               and urlsplit(p.base_url).port == own]
    assert clashes == []
