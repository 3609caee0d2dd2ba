"""Tests of the ``config`` package: layering of defaults, file and environment, and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import msgspec.toml
import pytest

import config
from config import (
    ConsoleSettings,
    HttpSettings,
    JournalSettings,
    MqttSettings,
    RuntimeSettings,
    Settings,
    SettingsError,
    load_settings,
)

DEFAULT_TOML = Path(config.__file__).with_name("default.toml")


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "framehub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_with_file(path: Path, **env: str) -> Settings:
    return load_settings({"FRAMEHUB_CONFIG": str(path), **env})


def error_of(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------------


def test_defaults_load_with_no_environment() -> None:
    settings = load_settings({})

    assert settings == Settings()
    assert settings.data_dir == "data"
    assert settings.log_level == "INFO"
    assert settings.http == HttpSettings(
        host="127.0.0.1",
        port=8080,
        public_url="",
        max_upload_bytes=100 * 1024 * 1024,
        rate_limit_per_minute=600,
    )
    assert settings.console == ConsoleSettings(host="127.0.0.1", port=8081)
    assert settings.mqtt == MqttSettings(
        mode="managed", host="127.0.0.1", port=1884, url="", mosquitto_binary="mosquitto"
    )
    assert settings.runtime == RuntimeSettings(
        mailbox_capacity=1000,
        ask_timeout_s=5.0,
        shutdown_timeout_s=5.0,
        max_restarts=5,
        restart_window_s=30.0,
        backoff_min_s=0.1,
        backoff_max_s=5.0,
        backoff_jitter=0.2,
        backoff_reset_s=10.0,
    )
    assert settings.journal == JournalSettings(max_attempts=5, retention_hours=168.0, batch_max=512)


def test_default_toml_holds_every_key_with_its_default_and_a_comment() -> None:
    shipped = msgspec.toml.decode(DEFAULT_TOML.read_bytes())
    expected = msgspec.to_builtins(Settings())
    assert shipped == expected

    lines = DEFAULT_TOML.read_text(encoding="utf-8").splitlines()
    key_lines = [i for i, line in enumerate(lines) if re.match(r"^\w+ = ", line)]
    leaves = sum(len(v) if isinstance(v, dict) else 1 for v in expected.values())
    assert len(key_lines) == leaves
    for i in key_lines:
        assert lines[i - 1].startswith("# "), f"no comment above {lines[i]!r}"


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load_settings({"PATH": "/bin", "HOME": "/root", "FRAMEHUBX": "1"}) == Settings()


# --- layering -------------------------------------------------------------------------------


def test_file_overrides_defaults_key_by_key(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'data_dir = "/srv/framehub"\n'
        "[http]\nport = 9000\n"
        "[runtime]\nask_timeout_s = 2.5\nmax_restarts = 3\n",
    )

    settings = load_with_file(path)

    assert settings.data_dir == "/srv/framehub"
    assert settings.http.port == 9000
    assert settings.http.host == "127.0.0.1"
    assert settings.runtime.ask_timeout_s == 2.5
    assert settings.runtime.max_restarts == 3
    assert settings.runtime.mailbox_capacity == 1000


def test_file_integers_are_accepted_for_float_keys(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[journal]\nretention_hours = 24\n")

    assert load_with_file(path).journal.retention_hours == 24.0


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[http]\nport = 9000\nhost = '0.0.0.0'\n")

    settings = load_with_file(path, FRAMEHUB_HTTP__PORT="9100")

    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"


def test_environment_overrides_defaults_with_converted_types() -> None:
    settings = load_settings(
        {
            "FRAMEHUB_RUNTIME__BACKOFF_JITTER": "0.5",
            "FRAMEHUB_RUNTIME__MAILBOX_CAPACITY": "64",
            "FRAMEHUB_JOURNAL__RETENTION_HOURS": "12",
            "FRAMEHUB_MQTT__MOSQUITTO_BINARY": "/usr/sbin/mosquitto",
        }
    )

    assert settings.runtime.backoff_jitter == 0.5
    assert settings.runtime.mailbox_capacity == 64
    assert settings.journal.retention_hours == 12.0
    assert isinstance(settings.journal.retention_hours, float)
    assert settings.mqtt.mosquitto_binary == "/usr/sbin/mosquitto"


def test_top_level_keys_from_environment_override_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'data_dir = "/from/file"\nlog_level = "ERROR"\n')

    settings = load_with_file(path, FRAMEHUB_DATA_DIR="/from/env", FRAMEHUB_LOG_LEVEL="DEBUG")

    assert settings.data_dir == "/from/env"
    assert settings.log_level == "DEBUG"


def test_environment_names_are_case_insensitive(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[console]\nport = 9999\n")

    settings = load_settings(
        {
            "framehub_config": str(path),
            "framehub_http__port": "7000",
            "FrameHub_Mqtt__Mode": "external",
            "FRAMEHUB_mqtt__URL": "mqtt://broker.lan",
            "framehub_log_level": "WARNING",
        }
    )

    assert settings.console.port == 9999
    assert settings.http.port == 7000
    assert settings.mqtt.mode == "external"
    assert settings.mqtt.url == "mqtt://broker.lan"
    assert settings.log_level == "WARNING"


def test_empty_framehub_config_means_no_file() -> None:
    assert load_settings({"FRAMEHUB_CONFIG": ""}) == Settings()


@pytest.mark.parametrize("section", ["http", "console", "mqtt"])
def test_port_zero_is_accepted(section: str, tmp_path: Path) -> None:
    from_env = load_settings({f"FRAMEHUB_{section.upper()}__PORT": "0"})
    from_file = load_with_file(write_toml(tmp_path, f"[{section}]\nport = 0\n"))

    assert getattr(from_env, section).port == 0
    assert getattr(from_file, section).port == 0


# --- unknown keys ---------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[http]\nprot = 1\n")

    message = error_of({"FRAMEHUB_CONFIG": str(path)})

    assert message == f"http.prot in {path}: unknown setting"


@pytest.mark.parametrize(
    ("text", "key"), [("colour = 'red'\n", "colour"), ("[htp]\nport = 1\n", "htp")]
)
def test_unknown_top_level_key_or_section_in_file(tmp_path: Path, text: str, key: str) -> None:
    path = write_toml(tmp_path, text)

    assert error_of({"FRAMEHUB_CONFIG": str(path)}) == f"{key} in {path}: unknown setting"


def test_section_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "http = 5\n")

    assert error_of({"FRAMEHUB_CONFIG": str(path)}) == f"http in {path}: expected a table, got 5"


def test_unknown_environment_variable_names_variable_and_key() -> None:
    message = error_of({"FRAMEHUB_HTTP__PROT": "1"})

    assert message == "FRAMEHUB_HTTP__PROT: unknown setting http.prot"


@pytest.mark.parametrize(
    ("var", "expected"),
    [
        ("FRAMEHUB_NOPE", "FRAMEHUB_NOPE: unknown setting nope"),
        ("FRAMEHUB_NOPE__PORT", "FRAMEHUB_NOPE__PORT: unknown setting nope.port"),
        ("FRAMEHUB_HTTP_PORT", "did you mean FRAMEHUB_HTTP__PORT?"),
        ("FRAMEHUB_HTTP", "http is a section: use FRAMEHUB_HTTP__<KEY>"),
    ],
)
def test_other_unknown_environment_variables(var: str, expected: str) -> None:
    message = error_of({var: "1"})

    assert message.startswith(f"{var}: unknown setting")
    assert expected in message


def test_same_variable_in_two_cases_is_rejected() -> None:
    message = error_of({"FRAMEHUB_HTTP__PORT": "1", "framehub_http__port": "2"})

    assert "FRAMEHUB_HTTP__PORT" in message
    assert "framehub_http__port" in message
    assert "twice" in message


# --- wrong types and values -----------------------------------------------------------------


def test_wrong_type_from_environment_names_variable() -> None:
    message = error_of({"FRAMEHUB_HTTP__PORT": "abc"})

    assert message == "FRAMEHUB_HTTP__PORT: expected an integer, got 'abc'"


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("FRAMEHUB_RUNTIME__ASK_TIMEOUT_S", "soon", "expected a number, got 'soon'"),
        ("FRAMEHUB_JOURNAL__BATCH_MAX", "1.5", "expected an integer, got '1.5'"),
        ("FRAMEHUB_HTTP__PORT", "", "expected an integer, got ''"),
    ],
)
def test_unconvertible_environment_values(var: str, raw: str, expected: str) -> None:
    assert error_of({var: raw}) == f"{var}: {expected}"


def test_wrong_type_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[http]\nport = "8080"\n')

    message = error_of({"FRAMEHUB_CONFIG": str(path)})

    assert message == f"http.port in {path}: expected an integer, got '8080'"


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("FRAMEHUB_HTTP__PORT", "65536", "must be between 0 and 65535"),
        ("FRAMEHUB_CONSOLE__PORT", "-1", "must be between 0 and 65535"),
        ("FRAMEHUB_MQTT__PORT", "70000", "must be between 0 and 65535"),
        ("FRAMEHUB_HTTP__MAX_UPLOAD_BYTES", "0", "must be at least 1"),
        ("FRAMEHUB_HTTP__RATE_LIMIT_PER_MINUTE", "-5", "must be at least 1"),
        ("FRAMEHUB_RUNTIME__MAILBOX_CAPACITY", "0", "must be at least 1"),
        ("FRAMEHUB_RUNTIME__MAX_RESTARTS", "0", "must be at least 1"),
        ("FRAMEHUB_JOURNAL__MAX_ATTEMPTS", "0", "must be at least 1"),
        ("FRAMEHUB_JOURNAL__BATCH_MAX", "0", "must be at least 1"),
        ("FRAMEHUB_RUNTIME__ASK_TIMEOUT_S", "0", "must be greater than 0"),
        ("FRAMEHUB_RUNTIME__SHUTDOWN_TIMEOUT_S", "-1", "must be greater than 0"),
        ("FRAMEHUB_RUNTIME__RESTART_WINDOW_S", "0", "must be greater than 0"),
        ("FRAMEHUB_RUNTIME__BACKOFF_RESET_S", "0", "must be greater than 0"),
        ("FRAMEHUB_JOURNAL__RETENTION_HOURS", "0", "must be greater than 0"),
        ("FRAMEHUB_RUNTIME__BACKOFF_JITTER", "1.5", "must be between 0 and 1"),
        ("FRAMEHUB_RUNTIME__BACKOFF_JITTER", "-0.1", "must be between 0 and 1"),
        ("FRAMEHUB_RUNTIME__ASK_TIMEOUT_S", "nan", "must be greater than 0"),
        ("FRAMEHUB_RUNTIME__ASK_TIMEOUT_S", "inf", "must be a finite number"),
        ("FRAMEHUB_DATA_DIR", "", "must not be empty"),
        ("FRAMEHUB_HTTP__HOST", "", "must not be empty"),
    ],
)
def test_out_of_range_environment_values(var: str, raw: str, expected: str) -> None:
    message = error_of({var: raw})

    assert message.startswith(f"{var}: {expected}")


def test_out_of_range_value_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[runtime]\nbackoff_jitter = 2.0\n")

    message = error_of({"FRAMEHUB_CONFIG": str(path)})

    assert message == f"runtime.backoff_jitter in {path}: must be between 0 and 1, got 2.0"


def test_backoff_min_must_not_exceed_backoff_max(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[runtime]\nbackoff_min_s = 6.0\n")

    message = error_of({"FRAMEHUB_CONFIG": str(path)})

    assert message.startswith(f"runtime.backoff_min_s in {path}: must not exceed backoff_max_s")
    assert load_with_file(path, FRAMEHUB_RUNTIME__BACKOFF_MAX_S="6").runtime.backoff_max_s == 6.0


def test_bad_mqtt_mode_names_key_and_choices(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[mqtt]\nmode = 'embedded'\n")

    from_file = error_of({"FRAMEHUB_CONFIG": str(path)})
    from_env = error_of({"FRAMEHUB_MQTT__MODE": "embedded"})

    assert from_file == f"mqtt.mode in {path}: must be 'managed' or 'external', got 'embedded'"
    assert from_env == "FRAMEHUB_MQTT__MODE: must be 'managed' or 'external', got 'embedded'"


def test_bad_log_level_lists_the_levels() -> None:
    message = error_of({"FRAMEHUB_LOG_LEVEL": "LOUD"})

    assert message == (
        "FRAMEHUB_LOG_LEVEL: must be 'DEBUG', 'INFO', 'WARNING' or 'ERROR', got 'LOUD'"
    )


def test_public_url_must_be_http() -> None:
    message = error_of({"FRAMEHUB_HTTP__PUBLIC_URL": "frames.example.org"})

    assert message.startswith("FRAMEHUB_HTTP__PUBLIC_URL: must be empty or an http(s):// URL")


# --- mqtt external mode ---------------------------------------------------------------------


def test_external_mode_requires_a_url() -> None:
    message = error_of({"FRAMEHUB_MQTT__MODE": "external"})

    assert message == "mqtt.url (default): required when mode is 'external'"


@pytest.mark.parametrize(
    "url",
    [
        "http://broker.lan",
        "broker.lan:1883",
        "mqtt://",
        "mqtt://broker.lan:99999",
        "mqtt://broker.lan:0",
        "mqtt://broker.lan/topic",
        "mqtt://broker.lan?x=1",
    ],
)
def test_external_mode_rejects_malformed_urls(url: str) -> None:
    message = error_of({"FRAMEHUB_MQTT__MODE": "external", "FRAMEHUB_MQTT__URL": url})

    assert message.startswith("FRAMEHUB_MQTT__URL: must be mqtt://[user:pass@]host[:port]")


def test_malformed_url_in_file_names_key_and_hides_password(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[mqtt]\nmode = 'external'\nurl = 'mqtts://bob:s3cret@b:1'\n")

    message = error_of({"FRAMEHUB_CONFIG": str(path)})

    assert message.startswith(f"mqtt.url in {path}: must be mqtt://")
    assert "s3cret" not in message
    assert "bob:***@b:1" in message


def test_external_mode_with_url_exposes_the_broker() -> None:
    settings = load_settings(
        {
            "FRAMEHUB_MQTT__MODE": "external",
            "FRAMEHUB_MQTT__URL": "mqtt://bob:p%40ss@broker.lan:2883",
        }
    )

    mqtt = settings.mqtt
    assert (mqtt.broker_host, mqtt.broker_port) == ("broker.lan", 2883)
    assert (mqtt.username, mqtt.password) == ("bob", "p@ss")


def test_external_url_port_defaults_to_1883() -> None:
    settings = load_settings({"FRAMEHUB_MQTT__MODE": "external", "FRAMEHUB_MQTT__URL": "mqtt://b"})

    assert (settings.mqtt.broker_host, settings.mqtt.broker_port) == ("b", 1883)
    assert settings.mqtt.username is None


def test_managed_mode_uses_host_and_port_and_ignores_url() -> None:
    settings = load_settings({"FRAMEHUB_MQTT__PORT": "0", "FRAMEHUB_MQTT__URL": "not a url"})

    assert (settings.mqtt.broker_host, settings.mqtt.broker_port) == ("127.0.0.1", 0)
    assert settings.mqtt.password is None


def test_direct_construction_checks_cross_field_rules() -> None:
    with pytest.raises(ValueError, match="url: required"):
        MqttSettings(mode="external")
    with pytest.raises(ValueError, match="backoff_min_s: must not exceed"):
        RuntimeSettings(backoff_min_s=2.0, backoff_max_s=1.0)


# --- FRAMEHUB_CONFIG file problems ----------------------------------------------------------


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    message = error_of({"FRAMEHUB_CONFIG": str(missing)})

    assert message.startswith(f"FRAMEHUB_CONFIG: cannot read {missing}")


def test_config_file_that_is_a_directory_is_reported(tmp_path: Path) -> None:
    assert error_of({"FRAMEHUB_CONFIG": str(tmp_path)}).startswith(
        f"FRAMEHUB_CONFIG: cannot read {tmp_path}"
    )


@pytest.mark.parametrize("content", [b"[http\nport = 1\n", b"port = 1\nport = 2\n", b"\xff\xfe"])
def test_unparsable_config_file_is_reported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.toml"
    path.write_bytes(content)

    message = error_of({"FRAMEHUB_CONFIG": str(path)})

    assert message.startswith(f"FRAMEHUB_CONFIG: {path} is not valid TOML")


def test_relative_config_path_is_reported_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path, "[http]\nprot = 1\n")

    message = error_of({"FRAMEHUB_CONFIG": "framehub.toml"})

    assert message == f"http.prot in {tmp_path / 'framehub.toml'}: unknown setting"


# --- helpers on the structs -----------------------------------------------------------------


def test_data_path_is_absolute_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert load_settings({}).data_path == tmp_path.resolve() / "data"
    assert Settings(data_dir="a/../b").data_path == tmp_path.resolve() / "b"


def test_http_base_url_prefers_public_url_and_else_derives_it() -> None:
    assert HttpSettings().base_url(4321) == "http://127.0.0.1:4321"
    assert HttpSettings(host="::1").base_url(80) == "http://[::1]:80"
    public = HttpSettings(public_url="https://frames.example.org/")
    assert public.base_url(4321) == "https://frames.example.org"


def test_settings_are_immutable() -> None:
    settings = load_settings({})

    with pytest.raises(AttributeError):
        settings.http.port = 1  # type: ignore[misc]


def test_public_surface() -> None:
    assert set(config.__all__) == {
        "Settings",
        "HttpSettings",
        "ConsoleSettings",
        "MqttSettings",
        "RuntimeSettings",
        "JournalSettings",
        "FramesSettings",
        "OtaSettings",
        "TelemetrySettings",
        "NotifierSettings",
        "load_settings",
        "SettingsError",
    }
    assert issubclass(SettingsError, ValueError)


def test_the_clients_token_variable_is_not_a_setting() -> None:
    settings = load_settings(environ={"FRAMEHUB_TOKEN": "secret", "FRAMEHUB_HTTP__PORT": "9000"})
    assert settings.http.port == 9000


def test_notifier_webhook_url_must_be_http() -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_URL: must be empty or an http"):
        load_settings(environ={"FRAMEHUB_NOTIFIER__WEBHOOK_URL": "ftp://example.org/hook"})
    settings = load_settings(environ={"FRAMEHUB_NOTIFIER__WEBHOOK_URL": "https://example.org/hook"})
    assert settings.notifier.webhook_url == "https://example.org/hook"
