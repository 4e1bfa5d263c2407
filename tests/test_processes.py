"""The gateway as operators run it: a real process, its signals, its logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fakes import FakeUpstream, answer, chunk, error_reply, sse_reply
from tests.support.procs import free_port, gateway_process
from tests.support.servers import wait_until

UPSTREAM_CANARY = "sk-canary-upstream-7f3a9c1e5b"
CLIENT_CANARY = "sk-canary-client-2d8e4f6a0c"
HI = [{"role": "user", "content": "hello"}]


def test_no_key_ever_appears_in_logs_errors_metrics_or_stats(tmp_path: Path, fake: FakeUpstream) -> None:
    fake.behaviours["good"] = answer("fine")
    fake.behaviours["denied"] = error_reply(401, f"Incorrect API key provided: {UPSTREAM_CANARY}")
    fake.behaviours["rejects"] = error_reply(400, f"bad request for key {UPSTREAM_CANARY}")
    fake.behaviours["breaks"] = sse_reply([chunk({"role": "assistant", "content": "Hi"}),
                                           {"error": {"message": f"boom {UPSTREAM_CANARY}"}}], done=False)
    config = f"""
auth:
  admin_key: admin-0123456789
  keys: [{{name: app, key: {CLIENT_CANARY}, pools: ["*"], models: ["*"]}}]
providers:
  up: {{type: openai, base_url: '{fake.url}/v1', api_key: {UPSTREAM_CANARY}, retry: {{max_retries: 0}}}}
models:
  good: {{provider: up, price: {{input: 1, output: 1}}}}
  denied: {{provider: up}}
  rejects: {{provider: up}}
  breaks: {{provider: up}}
pools:
  p: {{mode: best-of, members: [good, denied, rejects], judge: {{model: good}}}}
"""
    auth = {"authorization": f"Bearer {CLIENT_CANARY}"}
    bodies: list[str] = []
    with gateway_process(config, tmp_path) as gw:
        for model in ("good", "denied", "rejects", "p"):
            bodies.append(httpx.post(gw.url + "/v1/chat/completions", json={"model": model, "messages": HI},
                                     headers=auth).text)
        with httpx.stream("POST", gw.url + "/v1/chat/completions",
                          json={"model": "breaks", "messages": HI, "stream": True}, headers=auth) as r:
            bodies.append(r.read().decode())
        # a caller presenting a wrong key that looks like the real one
        bodies.append(httpx.post(gw.url + "/v1/chat/completions", json={"model": "good", "messages": HI},
                                 headers={"authorization": f"Bearer {CLIENT_CANARY}x"}).text)
        bodies.append(httpx.get(gw.url + "/metrics").text)
        bodies.append(httpx.get(gw.url + "/v1/fusion/stats", headers=auth).text)
        bodies.append(httpx.get(gw.url + "/v1/models", headers=auth).text)
        log = gw.log()
    assert '"msg":"request"' in log  # the logs are really there
    for text in (*bodies, log):
        assert UPSTREAM_CANARY not in text
        assert CLIENT_CANARY not in text
    assert fake.requests_for("good")[0].headers["authorization"] == f"Bearer {UPSTREAM_CANARY}"


SLOW = """
server: {{shutdown_grace_s: 2, watch_config: false}}
providers:
  sim:
    type: simulator
    profiles:
      drip: {{ttft_ms: 10, tokens_per_s: 4, answer_tokens: 400}}
      slowjson: {{ttft_ms: 1200, tokens_per_s: 5000}}
models:
  drip: {{provider: sim}}
  slowjson: {{provider: sim}}
{extra}
"""


def test_sigterm_drops_readiness_lets_requests_finish_and_ends_streams_in_band(tmp_path: Path) -> None:
    with gateway_process(SLOW.format(extra=""), tmp_path) as gw:
        stream_text: list[str] = []
        json_status: list[int] = []

        def stream() -> None:
            with httpx.stream("POST", gw.url + "/v1/chat/completions",
                              json={"model": "drip", "messages": HI, "stream": True}, timeout=30) as r:
                stream_text.append(r.read().decode())

        def slow_json() -> None:
            r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "slowjson", "messages": HI}, timeout=30)
            json_status.append(r.status_code)

        threads = [threading.Thread(target=stream), threading.Thread(target=slow_json)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both requests are in flight (no readiness signal to poll for here)
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)

        def not_ready() -> bool:
            try:
                return httpx.get(gw.url + "/readyz", timeout=1).status_code == 503
            except httpx.HTTPError:
                return True  # no longer accepting connections at all

        assert wait_until(not_ready, timeout=1.0)
        for t in threads:
            t.join(timeout=20)
        ended = time.monotonic() - t0
        gw.proc.wait(timeout=20)
    assert json_status == [200]  # finished within the grace period
    text = stream_text[0]
    assert "[DONE]" not in text
    last = [line for line in text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["error"]["code"] == "service_unavailable"
    assert 1.5 < ended < 6  # the grace period (2 s), not the 100 s the stream would have taken
    assert gw.proc.returncode is not None


def test_sighup_reloads_the_file(tmp_path: Path) -> None:
    with gateway_process(SLOW.format(extra=""), tmp_path) as gw:
        extended = SLOW.format(extra="").replace("  slowjson: {provider: sim}",
                                                 "  slowjson: {provider: sim}\n  extra: {provider: sim}")
        gw.config_path.write_text(extended)
        gw.signal(signal.SIGHUP)
        assert wait_until(lambda: "extra" in httpx.get(gw.url + "/v1/models").text, timeout=5)
        assert '"reason":"SIGHUP"' in gw.log()


def test_admin_reload_reports_an_invalid_file_and_keeps_serving(tmp_path: Path) -> None:
    config = SLOW.format(extra="auth: {admin_key: admin-0123456789, keys: []}")
    with gateway_process(config, tmp_path) as gw:
        gw.config_path.write_text(config.replace("provider: sim}", "provider: nowhere}", 1))
        r = httpx.post(gw.url + "/admin/reload", headers={"authorization": "Bearer admin-0123456789"})
        still = httpx.post(gw.url + "/v1/chat/completions", json={"model": "drip", "messages": HI, "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["code"] == "config_invalid"
    assert r.json()["error"]["message"].endswith("models.drip.provider: unknown provider 'nowhere' (known: sim)")
    assert still.status_code == 200


def test_without_keys_the_gateway_refuses_non_loopback_addresses(tmp_path: Path) -> None:
    path = tmp_path / "open.yaml"
    path.write_text(SLOW.format(extra=""))
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path), "--host", "0.0.0.0",
                           "--port", str(free_port())], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0: no client keys are configured" in done.stderr


def test_without_keys_on_loopback_it_serves_and_warns(tmp_path: Path) -> None:
    with gateway_process(SLOW.format(extra=""), tmp_path) as gw:
        log = gw.log()
    warning = next(json.loads(x) for x in log.splitlines() if "no client keys" in x)
    assert warning["level"] == "warning"


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_with_keys_any_address_is_fine(tmp_path: Path, host: str) -> None:
    config = SLOW.format(extra="auth: {keys: [{name: a, key: sk-a-0123456789, pools: ['*'], models: ['*']}]}")
    with gateway_process(config, tmp_path, args=("--host", host)) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "drip", "messages": HI, "max_tokens": 2},
                       headers={"authorization": "Bearer sk-a-0123456789"})
    assert r.status_code == 200
