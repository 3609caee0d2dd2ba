"""``GET /metrics``: the hub's counters in Prometheus' text format (admin token)."""

from __future__ import annotations

from starlette.responses import Response

from actors.frames import FrameProxy
from actors.http import ApiRoute, RequestContext, api_route
from actors.mqtt import BridgeMessage, GetMqttStats, MqttStats
from actors.notifier import GetNotifierStats, NotifierMessage, NotifierStats
from actors.telemetry import GetTelemetryStats, TelemetryMessage, TelemetryStats
from supervision import ActorRef, ActorSnapshot


def _walk(node: ActorSnapshot) -> list[ActorSnapshot]:
    nodes = [node]
    for child in node.children:
        nodes.extend(_walk(child))
    return nodes


class MetricsRoutes:
    """Counters in Prometheus text format."""

    def __init__(
        self,
        telemetry: ActorRef[TelemetryMessage],
        notifier: ActorRef[NotifierMessage],
        mqtt: ActorRef[BridgeMessage],
    ) -> None:
        self._telemetry = telemetry
        self._notifier = notifier
        self._mqtt = mqtt

    async def metrics(self, context: RequestContext, _: None) -> Response:
        stats: MqttStats = await self._mqtt.ask(GetMqttStats())
        telemetry: TelemetryStats = await self._telemetry.ask(GetTelemetryStats())
        notifier: NotifierStats = await self._notifier.ask(GetNotifierStats())
        actors = _walk(context.snapshot())
        frames = [a for a in actors if a.actor_class == FrameProxy.__name__]
        lines = [
            "# TYPE framehub_mqtt_connected gauge",
            f"framehub_mqtt_connected {int(stats.connected)}",
            "# TYPE framehub_mqtt_connects_total counter",
            f"framehub_mqtt_connects_total {stats.connects}",
            "# TYPE framehub_mqtt_received_total counter",
            f"framehub_mqtt_received_total {stats.received}",
            "# TYPE framehub_mqtt_routed_total counter",
            f"framehub_mqtt_routed_total {stats.routed}",
            "# TYPE framehub_mqtt_published_total counter",
            f"framehub_mqtt_published_total {stats.published}",
            "# TYPE framehub_mqtt_dropped_total counter",
            *(
                f'framehub_mqtt_dropped_total{{reason="{reason}"}} {count}'
                for reason, count in sorted(stats.dropped.items())
            ),
            "# TYPE framehub_telemetry_ingested_total counter",
            f"framehub_telemetry_ingested_total {telemetry.ingested}",
            "# TYPE framehub_telemetry_stored_total counter",
            f"framehub_telemetry_stored_total {telemetry.stored}",
            "# TYPE framehub_telemetry_dropped_total counter",
            *(
                f'framehub_telemetry_dropped_total{{reason="{reason}"}} {count}'
                for reason, count in sorted(telemetry.dropped.items())
            ),
            "# TYPE framehub_telemetry_timestamps_replaced_total counter",
            f"framehub_telemetry_timestamps_replaced_total {telemetry.timestamps_replaced}",
            "# TYPE framehub_telemetry_flushes_total counter",
            f"framehub_telemetry_flushes_total {telemetry.flushes}",
            "# TYPE framehub_telemetry_buffered gauge",
            f"framehub_telemetry_buffered {telemetry.buffered}",
            "# TYPE framehub_alerts_open gauge",
            f"framehub_alerts_open {telemetry.open_alerts}",
            "# TYPE framehub_notifications gauge",
            f"framehub_notifications {notifier.notifications}",
            "# TYPE framehub_notifications_unread gauge",
            f"framehub_notifications_unread {notifier.unread}",
            "# TYPE framehub_webhook_deliveries gauge",
            f'framehub_webhook_deliveries{{state="pending"}} {notifier.webhook_pending}',
            f'framehub_webhook_deliveries{{state="delivered"}} {notifier.webhook_delivered}',
            f'framehub_webhook_deliveries{{state="abandoned"}} {notifier.webhook_abandoned}',
            "# TYPE framehub_notification_feed_subscribers gauge",
            f"framehub_notification_feed_subscribers {notifier.feed_subscribers}",
            "# TYPE framehub_notification_feed_disconnects_total counter",
            f"framehub_notification_feed_disconnects_total {notifier.feed_disconnects}",
            "# TYPE framehub_frame_proxies gauge",
            f"framehub_frame_proxies {len(frames)}",
            "# TYPE framehub_actor_restarts_total counter",
            *(
                f'framehub_actor_restarts_total{{path="{a.path}"}} {a.restarts}'
                for a in actors
                if a.actor_class != FrameProxy.__name__
            ),
            "# TYPE framehub_mailbox_depth_max gauge",
            f"framehub_mailbox_depth_max {max((a.mailbox_depth for a in actors), default=0)}",
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "GET",
                "/metrics",
                self.metrics,
                media_type="text/plain",
                auth="admin",
                summary=(
                    "counters in Prometheus text format: MQTT traffic and drops, telemetry, actors"
                ),
                tags=("probes",),
            ),
        )
