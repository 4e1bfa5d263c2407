"""Copies of the operator's upstream key never reach the caller inside upstream error messages, however
the upstream encoded them."""

from __future__ import annotations

import base64
import urllib.parse

import httpx
import pytest

from tests.conftest import GatewayRunner, fake_provider_yaml
from tests.support.fakes import FakeUpstream, error_reply

SECRET = "sk-operator-secret-0123456789"
HI = [{"role": "user", "content": "hi"}]

ENCODED = {
    "plain": SECRET,
    "upper": SECRET.upper(),
    "percent": urllib.parse.quote(SECRET, safe="").replace("-", "%2D"),
    "percent twice": urllib.parse.quote(urllib.parse.quote(SECRET.replace("-", "%2D"), safe=""), safe=""),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "base64 basic": base64.b64encode(f"user:{SECRET}".encode()).decode(),
    "base64 url": base64.urlsafe_b64encode(f"Bearer {SECRET}".encode()).decode().rstrip("="),
    "spaced": " ".join(SECRET),
    "dotted upper": ".".join(SECRET.upper()),
}


@pytest.mark.parametrize("form", list(ENCODED))
def test_no_encoded_copy_of_the_key_reaches_the_caller(gateway: GatewayRunner, fake: FakeUpstream, form: str) -> None:
    copy = ENCODED[form]
    fake.behaviours["m"] = error_reply(400, f"Invalid parameter 'temperature'; request was signed with {copy}.")
    with gateway("providers:\n" + fake_provider_yaml(fake.url) + "models:\n  m: {provider: up}\n") as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "m", "messages": HI})
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert copy not in resp.text and SECRET not in resp.text
    squashed = "".join(c for c in urllib.parse.unquote(urllib.parse.unquote(message)).lower() if c.isalnum())
    assert "operatorsecret0123456789" not in squashed
    for token in message.split():
        for alt in ("+/", "-_"):
            try:
                decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=alt.encode())
            except ValueError:
                continue
            assert b"operator-secret" not in decoded
    if form in ("plain", "upper"):  # a plain copy, in any case, is starred out and the reason kept
        assert message == "upstream 'm' rejected the request (400): Invalid parameter 'temperature'; " \
                          "request was signed with ***."
    else:
        assert message == "upstream 'm' rejected the request (400): " \
                          "(the upstream's message was withheld: it quoted a credential)"


def test_a_message_without_the_key_is_kept(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = error_reply(400, "Invalid parameter 'temperature': 5 is greater than 2.")
    with gateway("providers:\n" + fake_provider_yaml(fake.url) + "models:\n  m: {provider: up}\n") as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "m", "messages": HI})
    assert resp.json()["error"]["message"] == ("upstream 'm' rejected the request (400): "
                                               "Invalid parameter 'temperature': 5 is greater than 2.")
