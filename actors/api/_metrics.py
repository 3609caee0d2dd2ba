"""``GET /metrics``: the hub's counters in Prometheus' text format (admin token)."""

from __future__ import annotations

from starlette.responses import Response

from actors.http import RequestContext, api_route
from actors.mqtt import MQTT_PATH, GetMqttStats, MqttStats
from supervision import ActorSnapshot


def _walk(node: ActorSnapshot) -> list[ActorSnapshot]:
    nodes = [node]
    for child in node.children:
        nodes.extend(_walk(child))
    return nodes


async def metrics(context: RequestContext, _: None) -> Response:
    stats: MqttStats = await context.ask(MQTT_PATH, GetMqttStats())
    actors = _walk(context.snapshot())
    frames = [a for a in actors if a.path.startswith("/frames/") and a.path != "/frames/fleet"]
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
        "# TYPE framehub_frame_proxies gauge",
        f"framehub_frame_proxies {len(frames)}",
        "# TYPE framehub_actor_restarts_total counter",
        *(
            f'framehub_actor_restarts_total{{path="{a.path}"}} {a.restarts}'
            for a in actors
            if not a.path.startswith("/frames/")
        ),
        "# TYPE framehub_mailbox_depth_max gauge",
        f"framehub_mailbox_depth_max {max((a.mailbox_depth for a in actors), default=0)}",
    ]
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


METRICS_ROUTES = (
    api_route(
        "GET",
        "/metrics",
        metrics,
        media_type="text/plain",
        auth="admin",
        summary="counters in Prometheus text format: MQTT traffic and drops, actors",
        tags=("probes",),
    ),
)
