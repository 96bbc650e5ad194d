"""The OpenAPI document, generated from the route declarations."""

from __future__ import annotations

from typing import Any

from camcount.config import CameraConfig
from camcount.http.models import CameraPatch
from camcount.http.openapi import openapi_document

METHODS = ("get", "post", "put", "patch", "delete")


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (p, m, op) for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS
    ]


def test_every_route_rest_and_live_is_described_with_its_security() -> None:
    doc = openapi_document([10, 60])
    assert doc["openapi"].startswith("3.1")
    assert {(p, m) for p, m, _ in operations(doc)} == {
        ("/healthz", "get"),
        ("/status", "get"),
        ("/cameras", "get"),
        ("/cameras", "post"),
        ("/cameras/{camera_id}", "get"),
        ("/cameras/{camera_id}", "patch"),
        ("/cameras/{camera_id}", "delete"),
        ("/cameras/{camera_id}/preview.jpg", "get"),
        ("/counts", "get"),
        ("/alerts", "get"),
        ("/forecasts", "get"),
        ("/events", "post"),
        ("/alerts/rules", "get"),
        ("/alerts/rules", "put"),
        ("/live/healthz", "get"),
        ("/live/poll", "get"),
        ("/live/events", "get"),
        ("/live/endpoints", "get"),
    }
    public = {p for p, _, op in operations(doc) if op.get("security") == []}
    assert public == {"/healthz", "/live/healthz"}
    assert doc["security"] == [{"bearer": []}]
    assert len({op["operationId"] for _, _, op in operations(doc)}) == len(operations(doc))


def test_every_reference_resolves_and_every_refusal_is_the_error_body() -> None:
    doc = openapi_document([10])
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref
    for path, method, op in operations(doc):
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)
    # FastAPI's own 422 body is not what the API answers
    assert "HTTPValidationError" not in schemas


def test_bodies_and_answers_name_their_models() -> None:
    doc = openapi_document([10, 60])
    schemas = doc["components"]["schemas"]

    def body(path: str, method: str) -> str:
        content = doc["paths"][path][method]["requestBody"]["content"]
        return str(content["application/json"]["schema"]["$ref"]).split("/")[-1]

    assert body("/cameras", "post") == "CameraConfig"
    assert body("/cameras/{camera_id}", "patch") == "CameraPatch"
    assert set(schemas["CameraPatch"]["properties"]) == set(CameraPatch.model_fields)
    assert set(schemas["CameraConfig"]["properties"]) == set(CameraConfig.model_fields)
    ok = doc["paths"]["/counts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/Counts"}
    assert "class_name" in schemas["CountRow"]["properties"]  # the name warehouse and live use


def test_counts_parameters_follow_the_configured_window_sizes() -> None:
    params = {
        p["name"]: p for p in openapi_document([60, 10])["paths"]["/counts"]["get"]["parameters"]
    }
    assert params["camera"]["required"] is True
    assert params["window"]["schema"]["enum"] == [10, 60]
    assert params["limit"]["schema"]["anyOf"][0]["maximum"] == 10_000
    assert set(params) == {
        "camera",
        "counter",
        "class",
        "direction",
        "window",
        "start",
        "end",
        "limit",
    }


def test_alerts_and_forecasts_name_their_parameters_and_answers() -> None:
    doc = openapi_document([60, 10])
    schemas = doc["components"]["schemas"]
    for path, model, names in (
        ("/alerts", "Alerts", {"camera", "severity", "since", "limit"}),
        ("/forecasts", "Forecasts", {"camera", "group", "counter", "window_size_s"}),
    ):
        op = doc["paths"][path]["get"]
        assert {p["name"] for p in op["parameters"]} == names
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}
    params = {p["name"]: p for p in doc["paths"]["/forecasts"]["get"]["parameters"]}
    assert params["window_size_s"]["schema"]["enum"] == [10, 60]
    assert set(schemas["AlertChange"]["properties"]) >= {"alert_id", "state", "opened_at"}
    assert set(schemas["ForecastPoint"]["properties"]) == {
        "window_start",
        "window_end",
        "value",
        "lower",
        "upper",
    }
