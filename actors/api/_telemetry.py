"""Telemetry routes (admin only): metric definitions, alert rules, alerts and a frame's samples.

Each route asks the telemetry actor; acknowledging and resolving an alert are the actor's
(it changes the alert and publishes the event in one transaction).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

from actors.http import ApiRoute, Page, PageQuery, RequestContext, api_route
from actors.telemetry import (
    DEFAULT_QUERY_LIMIT,
    MAX_QUERY_LIMIT,
    METRIC_NAME_PATTERN,
    AcknowledgeAlert,
    AlertPage,
    AlertRulePage,
    AlertRuleView,
    AlertState,
    AlertView,
    Comparison,
    CreateAlertRule,
    DefineMetric,
    ListAlertRules,
    ListAlerts,
    ListMetrics,
    MetricKind,
    MetricPage,
    MetricView,
    QueryTelemetry,
    Resolution,
    ResolveAlert,
    Severity,
    TelemetryMessage,
    TelemetrySeries,
)
from supervision import ActorRef

MetricName = Annotated[str, msgspec.Meta(pattern=METRIC_NAME_PATTERN)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class NewMetric(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: MetricName
    unit: Annotated[str, msgspec.Meta(max_length=32)]
    kind: MetricKind = "gauge"
    retention_days: Annotated[float, msgspec.Meta(gt=0, le=36_500)] | None = None
    """Days raw samples are kept; null: the hub's ``telemetry.raw_retention_days``."""


class NewAlertRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Neither ``device_id`` nor ``model``: every frame. ``clear_threshold`` (default:
    ``threshold``) must not lie on the breaching side of ``threshold``."""

    metric: MetricName
    comparison: Comparison
    threshold: float
    for_seconds: Annotated[float, msgspec.Meta(ge=0, le=30 * 86_400)]
    severity: Severity
    device_id: Id | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    clear_threshold: float | None = None


class AlertQuery(PageQuery, frozen=True, kw_only=True):
    state: AlertState | None = None
    device_id: Id | None = None


class AlertResolution(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=1000)] = ""


class TelemetryQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``since`` and ``until`` are RFC 3339 (UTC if without an offset); default: the last
    hour."""

    metric: MetricName
    since: datetime | None = None
    until: datetime | None = None
    resolution: Resolution = "raw"
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUERY_LIMIT)] = DEFAULT_QUERY_LIMIT


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class TelemetryRoutes:
    """Metrics, alert rules, alerts and frames' samples."""

    def __init__(self, telemetry: ActorRef[TelemetryMessage]) -> None:
        self._telemetry = telemetry

    async def define_metric(self, context: RequestContext, body: NewMetric) -> MetricView:
        return await self._telemetry.ask(
            DefineMetric(
                name=body.name,
                unit=body.unit,
                kind=body.kind,
                retention_days=body.retention_days,
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )

    async def list_metrics(self, context: RequestContext, _: None) -> Page[MetricView]:
        page = context.query(PageQuery)
        reply: MetricPage = await self._telemetry.ask(
            ListMetrics(limit=page.limit, cursor=page.cursor)
        )
        return Page(items=reply.items, next_cursor=reply.next_cursor)

    async def create_alert_rule(self, context: RequestContext, body: NewAlertRule) -> AlertRuleView:
        rule: AlertRuleView = await self._telemetry.ask(
            CreateAlertRule(
                metric=body.metric,
                comparison=body.comparison,
                threshold=body.threshold,
                for_seconds=body.for_seconds,
                severity=body.severity,
                device_id=body.device_id,
                model=body.model,
                clear_threshold=body.clear_threshold,
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )
        context.response_headers["Location"] = f"/api/v1/alert-rules/{rule.rule_id}"
        return rule

    async def list_alert_rules(self, context: RequestContext, _: None) -> Page[AlertRuleView]:
        page = context.query(PageQuery)
        reply: AlertRulePage = await self._telemetry.ask(
            ListAlertRules(limit=page.limit, cursor=page.cursor)
        )
        return Page(items=reply.items, next_cursor=reply.next_cursor)

    async def list_alerts(self, context: RequestContext, _: None) -> Page[AlertView]:
        query = context.query(AlertQuery)
        reply: AlertPage = await self._telemetry.ask(
            ListAlerts(
                state=query.state, device_id=query.device_id, limit=query.limit, cursor=query.cursor
            ),
        )
        return Page(items=reply.items, next_cursor=reply.next_cursor)

    async def acknowledge_alert(self, context: RequestContext, _: None) -> AlertView:
        return await self._telemetry.ask(
            AcknowledgeAlert(
                alert_id=context.path_params["alert_id"],
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )

    async def resolve_alert(self, context: RequestContext, body: AlertResolution) -> AlertView:
        return await self._telemetry.ask(
            ResolveAlert(
                alert_id=context.path_params["alert_id"],
                note=body.note,
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )

    async def device_telemetry(self, context: RequestContext, _: None) -> TelemetrySeries:
        query = context.query(TelemetryQuery)
        return await self._telemetry.ask(
            QueryTelemetry(
                device_id=context.path_params["device_id"],
                metric=query.metric,
                since=_epoch(query.since),
                until=_epoch(query.until),
                resolution=query.resolution,
                limit=query.limit,
            ),
        )

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "POST",
                "/api/v1/metrics",
                self.define_metric,
                body=NewMetric,
                response=MetricView,
                status=201,
                auth="admin",
                errors=(422,),
                tags=("telemetry",),
                summary=(
                    "define a metric (name, unit, kind, retention); defining it again replaces it"
                ),
            ),
            api_route(
                "GET",
                "/api/v1/metrics",
                self.list_metrics,
                query=PageQuery,
                response=Page[MetricView],
                auth="admin",
                tags=("telemetry",),
                summary="the defined metrics, oldest first",
            ),
            api_route(
                "POST",
                "/api/v1/alert-rules",
                self.create_alert_rule,
                body=NewAlertRule,
                response=AlertRuleView,
                status=201,
                auth="admin",
                errors=(404, 422),
                tags=("telemetry",),
                summary="an alert rule for one frame, a model or every frame, with a for-duration "
                "and a clear threshold",
            ),
            api_route(
                "GET",
                "/api/v1/alert-rules",
                self.list_alert_rules,
                query=PageQuery,
                response=Page[AlertRuleView],
                auth="admin",
                tags=("telemetry",),
                summary="the alert rules, oldest first (disabled ones too)",
            ),
            api_route(
                "GET",
                "/api/v1/alerts",
                self.list_alerts,
                query=AlertQuery,
                response=Page[AlertView],
                auth="admin",
                errors=(400,),
                tags=("telemetry",),
                summary="alerts, newest first, by state and frame",
            ),
            api_route(
                "POST",
                "/api/v1/alerts/{alert_id}/acknowledge",
                self.acknowledge_alert,
                response=AlertView,
                auth="admin",
                errors=(404, 409),
                tags=("telemetry",),
                summary="acknowledge an active alert",
            ),
            api_route(
                "POST",
                "/api/v1/alerts/{alert_id}/resolve",
                self.resolve_alert,
                body=AlertResolution,
                response=AlertView,
                auth="admin",
                errors=(404, 409, 422),
                tags=("telemetry",),
                summary="resolve an open alert with a note",
            ),
            api_route(
                "GET",
                "/api/v1/devices/{device_id}/telemetry",
                self.device_telemetry,
                query=TelemetryQuery,
                response=TelemetrySeries,
                auth="admin",
                errors=(400, 404, 422),
                tags=("telemetry",),
                summary="a frame's samples of one metric, raw or as 1-minute aggregates",
            ),
        )
