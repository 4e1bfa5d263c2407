"""``GET /v1/models/{id}`` (the SDK's ``models.retrieve``): the list's entries, with the list's visibility."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import GatewayRunner, sdk
from tests.openapi_schemas import validate
from tests.test_responses import SIM

KEYS = SIM + (
    "auth:\n  keys:\n"
    "    - {name: narrow, key: sk-narrow-0123456789, models: [quick], pools: []}\n"
    "    - {name: wide, key: sk-wide-0123456789, models: ['*'], pools: ['*']}\n"
)


def test_retrieve_gives_the_entry_of_the_list(gateway: GatewayRunner) -> None:
    with gateway(KEYS) as (_, srv), sdk(srv.url, api_key="sk-wide-0123456789") as client:
        listed = {m.id: m.model_dump() for m in client.models.list()}
        model = client.models.retrieve("quick")
        pool = client.models.retrieve("duo")
    assert model.model_dump() == listed["quick"] and model.owned_by == "sim"
    assert pool.model_dump() == listed["duo"]
    assert (pool.model_extra or {})["fusion"] == {"mode": "best-of", "members": ["quick", "other"], "judge": "judge"}
    validate(model.model_dump(exclude_unset=True), "Model")


def test_names_the_key_may_not_call_do_not_exist_for_it(gateway: GatewayRunner) -> None:
    with gateway(KEYS) as (_, srv), sdk(srv.url, api_key="sk-narrow-0123456789") as client:
        assert client.models.retrieve("quick").id == "quick"
        assert [m.id for m in client.models.list()] == ["quick"]
        for hidden in ("other", "duo", "nope"):
            with pytest.raises(openai.NotFoundError) as info:
                client.models.retrieve(hidden)
            assert info.value.body == {"message": f"The model '{hidden}' does not exist",
                                       "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
        with pytest.raises(openai.AuthenticationError), sdk(srv.url, api_key="sk-bad") as bad:
            bad.models.retrieve("quick")
