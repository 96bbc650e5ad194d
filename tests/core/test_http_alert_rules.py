"""``PUT /alerts/rules`` bodies, checked where they enter, and the routes
in the OpenAPI document."""

from __future__ import annotations

import pytest

from camcount.alerts.rules import AlertsConfig
from camcount.errors import AlertRulesRefused, RequestError
from camcount.http.alert_rules import checked_rules, refusal
from camcount.http.openapi import openapi_document

FLOW = {"kind": "flow", "id": "quiet", "camera": "gate", "counter": "door", "below": 2}


def test_a_valid_body_is_the_config_sections_rules() -> None:
    assert checked_rules({"rules": [FLOW]}) == AlertsConfig.model_validate({"rules": [FLOW]})
    assert checked_rules({"rules": []}).rules == ()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # both sides of a threshold
        ({"rules": [{**FLOW, "above": 5}]}, "rules.0.flow"),
        # a kind nobody knows
        ({"rules": [{**FLOW, "kind": "weather"}]}, "rules.0"),
        # a field no rule has
        ({"rules": [{**FLOW, "colour": "red"}]}, "rules.0.flow.colour"),
        # two rules with one id
        ({"rules": [FLOW, FLOW]}, "body"),
        # not the section's shape
        ({"rule": [FLOW]}, "rule"),
    ],
)
def test_an_invalid_body_is_a_422_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(RequestError) as exc:
        checked_rules(body)
    assert exc.value.status == 422
    assert f"invalid alert rules: {field}:" in exc.value.message
    assert "\n" not in exc.value.message


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(RequestError) as exc:
        checked_rules([FLOW])
    assert exc.value.status == 422


def test_rules_the_pipeline_cannot_run_name_their_position() -> None:
    err = refusal(AlertRulesRefused([(2, "alert rule 'x': window_s 30 is not counted")]))
    assert err.status == 422
    assert err.message == "rules.2: alert rule 'x': window_s 30 is not counted"
    assert err.detail[0]["loc"] == ["rules", "2"]


def test_the_routes_are_in_the_document_with_the_rules_model() -> None:
    doc = openapi_document([60])
    item = doc["paths"]["/alerts/rules"]
    assert set(item) == {"get", "put"}
    body = item["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AlertsConfig"}
    assert "422" in item["put"]["responses"] and "403" in item["put"]["responses"]
    assert "AlertsConfig" in doc["components"]["schemas"]
