"""``GET /alerts/rules`` and ``PUT /alerts/rules``: the alert rules in
force, and replacing them while the pipeline runs (docs/alerts.md,
docs/api.md).

The body and the answer have the config's ``alerts:`` format
(``{"rules": [...]}``), checked by the same models: a body that is not
JSON is a 400, an invalid rule a 422 whose detail names the field
(``rules.0.above``), and a rule valid alone that this pipeline cannot run
(a window size it does not count, a group it does not have) a 422 naming
the rule's position. ``PUT`` is a change, so it needs an admin token, as
every method but GET does.

No ``from __future__ import annotations`` here: FastAPI reads the
routes' annotations (``camcount.http.rest`` says why).
"""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse

from camcount.alerts.rules import AlertsConfig
from camcount.errors import AlertRulesRefused, RequestError
from camcount.http import bodies
from camcount.http.live.query import validation_detail
from camcount.http.responses import errors, json_body
from camcount.http.rest import Context

PATH = "/alerts/rules"


def checked_rules(body: Any) -> AlertsConfig:
    """The rules of a ``PUT`` body, or a 422 naming the first bad field."""
    if not isinstance(body, dict):
        raise RequestError("invalid", 'alert rules are a JSON object {"rules": [...]}', 422)
    try:
        return AlertsConfig.model_validate(body)
    except ValidationError as exc:
        detail = validation_detail(exc)
        first = detail[0]
        where = ".".join(first["loc"]) or "body"
        raise RequestError(
            "invalid", f"invalid alert rules: {where}: {first['msg']}"[:1000], 422, detail
        ) from None


def refusal(exc: AlertRulesRefused) -> RequestError:
    """Rules this pipeline cannot run: one detail entry per problem, at the
    rule's position in the body (``loc`` as pydantic's: ``["rules", "2"]``)."""
    detail = [
        {"loc": ["rules", str(i)], "msg": msg, "type": "value_error"} for i, msg in exc.problems
    ]
    first_at, first = exc.problems[0]
    return RequestError("invalid", f"rules.{first_at}: {first}"[:1000], 422, detail)


def alert_rules_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        PATH,
        operation_id="getAlertRules",
        summary="the alert rules in force (the config's alerts: format)",
        response_model=AlertsConfig,
        responses=errors(401, 429, 503),
    )
    async def get_rules(ctx: Context) -> JSONResponse:
        rules = await ctx.controller.alert_rules()
        return JSONResponse(rules.document())

    @router.put(
        PATH,
        operation_id="setAlertRules",
        summary="replace the alert rules while running; alerts of rules gone or changed resolve",
        response_model=AlertsConfig,
        response_description="the rules now in force",
        responses=errors(400, 401, 403, 413, 422, 429, 503),
        openapi_extra=json_body(AlertsConfig),
    )
    async def put_rules(request: Request, ctx: Context) -> JSONResponse:
        rules = checked_rules(bodies.parse_json(await request.body()))
        try:
            in_force = await ctx.controller.set_alert_rules(rules)
        except AlertRulesRefused as exc:
            raise refusal(exc) from None
        return JSONResponse(in_force.document())

    return router
