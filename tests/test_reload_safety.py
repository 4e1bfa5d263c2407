"""A reload never opens the door: a file that would remove authentication or every model, or break a
start-up rule, is refused whole; the watcher never applies a half-written file."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import load_config
from tests.support.logcapture import captured_log
from tests.support.servers import serving, wait_until

CLIENT = "sk-client-reload-0123456789"
ADMIN = "admin-reload-secret-0123"
HI = [{"role": "user", "content": "hi"}]

GOOD = f"""
server: {{watch_interval_s: 0.05, watch_settle_s: 0.6}}
providers:
  sim: {{type: simulator, profiles: {{m: {{ttft_ms: 1, tokens_per_s: 50000}}}}}}
models:
  m: {{provider: sim}}
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: alpha, key: {CLIENT}, pools: ["*"], models: ["*"]}}
"""

KEY_LINE = f"    - {{name: alpha, key: {CLIENT}, pools: [\"*\"], models: [\"*\"]}}\n"
NO_KEYS = GOOD.replace("  keys:\n" + KEY_LINE, "  keys: []\n")
NO_ADMIN = GOOD.replace(f"  admin_key: {ADMIN}\n", "")
NO_MODELS = GOOD.replace("models:\n  m: {provider: sim}\n", "")


def chat(url: str, key: str | None) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": HI}, headers=headers).status_code


def reload(url: str) -> httpx.Response:
    return httpx.post(url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the new config has no client keys (auth.keys) and would serve without authentication"),
        (NO_KEYS, "the new config has no client keys (auth.keys) and would serve without authentication"),
        (NO_ADMIN, "the new config has no admin key (auth.admin_key); no later reload could be asked for"),
        (NO_MODELS, "the new config has no models and no pools; it would serve nothing"),
    ],
)
def test_a_reload_that_would_open_the_door_is_refused_whole(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD.replace("watch_interval_s: 0.05", "watch_config: false, watch_interval_s: 0.05"))
    app = create_app(load_config(str(path)), str(path))
    with captured_log() as logged, serving(app) as srv:
        path.write_text(text)
        answer = reload(srv.url)
        metrics = httpx.get(srv.url + "/metrics").text
        keyless, keyed = chat(srv.url, None), chat(srv.url, CLIENT)
        again = reload(srv.url)  # the admin key still works
    message = f"{path}: refused: {reason}"
    assert answer.status_code == 400 and answer.json()["error"]["message"] == message
    assert "fusion_config_last_reload_successful 0.0" in metrics
    assert (keyless, keyed) == (401, 200)
    assert again.status_code == 400
    lines = [json.loads(x) for x in logged.getvalue().splitlines() if "config reload failed" in x]
    assert [x["error"] for x in lines] == [message, message]


def test_a_reload_holds_the_start_up_rule_for_the_address_served(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    open_config = NO_KEYS.replace("watch_interval_s: 0.05", "watch_config: false")
    path.write_text(open_config)
    # started (in-process, as a host may embed it) without keys, said to serve on every address
    app = create_app(load_config(str(path)), str(path), host="0.0.0.0")
    with serving(app) as srv:
        path.write_text(open_config.replace("tokens_per_s: 50000", "tokens_per_s: 40000"))
        answer = reload(srv.url)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        f"{path}: refused: the new config has no client keys (auth.keys) and the gateway serves on 0.0.0.0, "
        "beyond loopback")


def test_the_watcher_never_applies_a_half_written_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD)
    app = create_app(load_config(str(path)), str(path))
    new = GOOD.replace("tokens_per_s: 50000", "tokens_per_s: 40000")
    head, tail = new.split("auth:")
    seen: list[int] = []
    stop = threading.Event()
    with serving(app) as srv:

        def probe() -> None:
            while not stop.is_set():
                seen.append(chat(srv.url, None))

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            with path.open("w") as fh:  # a slow writer: cut before auth:, a pause, then the rest
                fh.write(head)
                fh.flush()
                os.fsync(fh.fileno())
                time.sleep(0.4)
                fh.write("auth:" + tail)
            assert wait_until(lambda: app.gateway.config.providers["sim"].profiles["m"].tokens_per_s == 40000,
                              timeout=10)
        finally:
            stop.set()
            prober.join()
        metrics = httpx.get(srv.url + "/metrics").text
    assert seen and set(seen) == {401}  # never a moment without authentication
    assert "fusion_config_last_reload_successful 1.0" in metrics
