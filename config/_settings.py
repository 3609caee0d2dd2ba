"""The hub's settings as frozen msgspec Structs: one per TOML section plus the top level.

Field constraints live in the types (``Annotated[..., msgspec.Meta(...)]``) and are enforced
when a document is converted with ``msgspec.convert``; the cross-field rules live in
``__post_init__`` and run on every construction. A ``__post_init__`` failure is a ``ValueError``
whose message reads ``"<field>: <problem>"`` so that the loader can name the offending key.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import msgspec

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
MqttMode = Literal["managed", "external"]

MQTT_DEFAULT_PORT = 1883
MANAGED_BROKER_PORT = 1884
"""Not 1883: a broker already on the machine (Debian's mosquitto service) often has it."""


def _require_finite(struct: msgspec.Struct) -> None:
    """Reject ``inf``/``nan``: TOML and float() accept them, but no duration or ratio means them."""
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, got {value!r}")


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for error messages and logs."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _check_http_url(url: str, field: str) -> None:
    """Accept an empty ``url`` or an http(s):// one; else ``ValueError`` naming ``field``."""
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{field}: must be empty or an http(s):// URL, got {url!r}")


def _split_mqtt_url(url: str) -> SplitResult:
    """Parse ``mqtt://[user[:pass]@]host[:port]``; raise ``ValueError`` naming the ``url`` field."""
    problem = f"url: must be mqtt://[user:pass@]host[:port], got {_redact(url)!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if (
        parts.scheme != "mqtt"
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == 0
    ):
        raise ValueError(problem)
    return parts


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[http]``: the API and upload server that frames and browsers talk to."""

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8080
    public_url: str = ""
    max_upload_bytes: PositiveInt = 100 * 1024 * 1024
    rate_limit_per_minute: PositiveInt = 600

    def __post_init__(self) -> None:
        _check_http_url(self.public_url, "public_url")

    def base_url(self, actual_port: int) -> str:
        """The URL frames should use to reach this server, without a trailing slash.

        ``public_url`` when set (for a hub behind a proxy); otherwise derived from ``host`` and
        ``actual_port``, which callers pass because ``port`` may be 0 ("pick a free port").
        """
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{actual_port}"


class ConsoleSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[console]``: the operator console's listener and its per-connection limits."""

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8081
    hello_timeout_s: PositiveFloat = 5.0
    send_queue: PositiveInt = 256
    close_timeout_s: PositiveFloat = 5.0
    tree_interval_s: PositiveFloat = 0.25
    refresh_interval_s: PositiveFloat = 1.0

    def __post_init__(self) -> None:
        _require_finite(self)


class MqttSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[mqtt]``: the broker frames connect to.

    In ``managed`` mode the hub runs ``mosquitto_binary`` itself on ``host``/``port``; in
    ``external`` mode it connects to ``url``, which is then required. Use the ``broker_*``,
    ``username`` and ``password`` properties rather than picking fields by mode.
    """

    mode: MqttMode = "managed"
    host: NonEmptyStr = "127.0.0.1"
    port: Port = MANAGED_BROKER_PORT
    url: str = ""
    mosquitto_binary: NonEmptyStr = "mosquitto"

    def __post_init__(self) -> None:
        if self.mode == "external":
            if not self.url:
                raise ValueError("url: required when mode is 'external'")
            _split_mqtt_url(self.url)

    def _external(self) -> SplitResult | None:
        return _split_mqtt_url(self.url) if self.mode == "external" else None

    @property
    def broker_host(self) -> str:
        """Host to connect to: the url's host in external mode, else ``host``."""
        parts = self._external()
        if parts is None or parts.hostname is None:
            return self.host
        return parts.hostname

    @property
    def broker_port(self) -> int:
        """Port to connect to: the url's port (default 1883) in external mode, else ``port``."""
        parts = self._external()
        if parts is None:
            return self.port
        return parts.port or MQTT_DEFAULT_PORT

    @property
    def username(self) -> str | None:
        """The url's user name (percent-decoded) in external mode, else ``None``."""
        parts = self._external()
        return unquote(parts.username) if parts is not None and parts.username else None

    @property
    def password(self) -> str | None:
        """The url's password (percent-decoded) in external mode, else ``None``."""
        parts = self._external()
        return unquote(parts.password) if parts is not None and parts.password else None


class RuntimeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[runtime]``: the actor system's mailboxes, timeouts and supervision policy."""

    mailbox_capacity: PositiveInt = 1000
    ask_timeout_s: PositiveFloat = 5.0
    shutdown_timeout_s: PositiveFloat = 5.0
    max_restarts: PositiveInt = 5
    restart_window_s: PositiveFloat = 30.0
    backoff_min_s: PositiveFloat = 0.1
    backoff_max_s: PositiveFloat = 5.0
    backoff_jitter: Fraction = 0.2
    backoff_reset_s: PositiveFloat = 10.0

    def __post_init__(self) -> None:
        _require_finite(self)
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_min_s: must not exceed backoff_max_s ({self.backoff_max_s!r}),"
                f" got {self.backoff_min_s!r}"
            )


class JournalSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[journal]``: delivery retries and retention of the outgoing-message journal."""

    max_attempts: PositiveInt = 5
    retention_hours: PositiveFloat = 168.0
    batch_max: PositiveInt = 512

    def __post_init__(self) -> None:
        _require_finite(self)


class FramesSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[frames]``: how the hub watches the frames on the wall."""

    heartbeat_interval_s: PositiveFloat = 30.0
    offline_after_missed: PositiveInt = 3
    command_timeout_s: PositiveFloat = 30.0

    def __post_init__(self) -> None:
        _require_finite(self)


class OtaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[ota]``: firmware images and update campaigns."""

    max_firmware_bytes: PositiveInt = 256 * 1024 * 1024
    progress_timeout_s: PositiveFloat = 600.0
    auto_campaign: bool = False
    auto_campaign_batch_size: PositiveInt = 10

    def __post_init__(self) -> None:
        _require_finite(self)


class TelemetrySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[telemetry]``: frames' samples, their retention and alert evaluation."""

    raw_retention_days: PositiveFloat = 7.0
    aggregate_retention_days: PositiveFloat = 400.0
    seen_interval_s: PositiveFloat = 60.0
    flush_interval_s: PositiveFloat = 0.05

    def __post_init__(self) -> None:
        _require_finite(self)


class NotifierSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[notifier]``: notifications for people and the optional webhook."""

    webhook_url: str = ""
    webhook_timeout_s: PositiveFloat = 10.0
    webhook_max_attempts: PositiveInt = 12
    webhook_backoff_min_s: PositiveFloat = 1.0
    webhook_backoff_max_s: PositiveFloat = 600.0
    retention_days: PositiveFloat = 90.0

    def __post_init__(self) -> None:
        _require_finite(self)
        _check_http_url(self.webhook_url, "webhook_url")
        if self.webhook_backoff_min_s > self.webhook_backoff_max_s:
            raise ValueError(
                "webhook_backoff_min_s: must not exceed webhook_backoff_max_s "
                f"({self.webhook_backoff_max_s!r}), got {self.webhook_backoff_min_s!r}"
            )


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All of the hub's settings.

    Build it with ``load_settings``. Direct construction (handy in tests) runs the cross-field
    checks but not the per-field range checks, which msgspec applies only when converting.
    """

    data_dir: NonEmptyStr = "data"
    log_level: LogLevel = "INFO"
    http: HttpSettings = HttpSettings()
    console: ConsoleSettings = ConsoleSettings()
    mqtt: MqttSettings = MqttSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    journal: JournalSettings = JournalSettings()
    frames: FramesSettings = FramesSettings()
    ota: OtaSettings = OtaSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    notifier: NotifierSettings = NotifierSettings()

    @property
    def data_path(self) -> Path:
        """``data_dir`` as an absolute path (``~`` expanded, relative to the current directory)."""
        return Path(self.data_dir).expanduser().resolve()
