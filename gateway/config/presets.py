"""Presets for ``type: openai``: the base URL and auth convention of well-known OpenAI-compatible services.

A preset only fills in defaults; every field written in the config wins. Cloud services authenticate
with ``Authorization: Bearer <api_key>``, so their presets need an ``api_key`` (or an ``authorization``
header); local servers run without one. OpenRouter also reads the optional ``HTTP-Referer`` and
``X-Title`` headers to attribute traffic to an app: set them under ``headers:`` if you want that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    #: a cloud service: a request without a key can only fail, so the config says so at load time
    needs_key: bool


PRESETS: dict[str, Preset] = {
    "openrouter": Preset("https://openrouter.ai/api/v1", needs_key=True),
    "together": Preset("https://api.together.xyz/v1", needs_key=True),
    "groq": Preset("https://api.groq.com/openai/v1", needs_key=True),
    "mistral": Preset("https://api.mistral.ai/v1", needs_key=True),
    "deepseek": Preset("https://api.deepseek.com/v1", needs_key=True),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", needs_key=True),
    # Local servers, at their default ports (except vLLM, see below).
    # vLLM listens on 8000 by default, which is the gateway's own port: run it with --port 8001.
    "vllm": Preset("http://127.0.0.1:8001/v1", needs_key=False),
    "ollama": Preset("http://127.0.0.1:11434/v1", needs_key=False),
    "llamacpp": Preset("http://127.0.0.1:8080/v1", needs_key=False),
}
