"""Telemetry (seed telemetry_service): samples, metrics and alert rules, ``/domain/telemetry``."""

from ._telemetry import TELEMETRY_PATH, TelemetryMonitor

__all__ = ["TELEMETRY_PATH", "TelemetryMonitor"]
