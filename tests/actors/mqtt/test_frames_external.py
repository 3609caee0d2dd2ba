"""``external`` MQTT mode: the hub connects to a broker it does not run, and ``mqtt-acl``
prints what that broker's administrator installs so the frames can use it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec
import trio

import wire
from actors import DATABASE_NAME
from actors._mqtt_acl import mqtt_acl
from actors.devices import hash_password
from config import load_settings
from tests.harness import ROOT
from tests.harness.broker import running_mosquitto
from tests.harness.hub import running_hub
from tests.harness.mqtt import connect

HUB_USER, HUB_PASSWORD = "hub-at-home", "s3cret pass"


def sections(text: str) -> tuple[str, str]:
    passwords, acl = text.split("# --- acl_file ---\n")
    lines = [line for line in passwords.splitlines() if line and not line.startswith("#")]
    return "\n".join(lines) + "\n", acl


async def test_the_hub_uses_an_external_broker_set_up_from_mqtt_acl(tmp_path: Path) -> None:
    hub_only = f"{HUB_USER}:{hash_password(HUB_PASSWORD)}\n"
    acl = f"user {HUB_USER}\ntopic readwrite #\n"
    async with running_mosquitto(tmp_path / "broker", hub_only, acl) as broker:
        url = f"mqtt://{HUB_USER}:{HUB_PASSWORD.replace(' ', '%20')}@127.0.0.1:{broker.port}"
        settings = {"MQTT__MODE": "external", "MQTT__URL": url}
        async with running_hub(tmp_path / "hub", **settings) as hub:
            assert not (tmp_path / "hub" / "mosquitto").exists()  # nothing managed
            assert (await hub.client.get("/readyz")).status_code == 200
            admin = await hub.new_user("admin", admin=True)
            frame = await hub.pair_frame(admin)
            assert (frame.mqtt["host"], frame.mqtt["port"]) == ("127.0.0.1", broker.port)

            environ = {
                "FRAMEHUB_DATA_DIR": str(tmp_path / "hub"),
                "FRAMEHUB_MQTT__MODE": "external",
                "FRAMEHUB_MQTT__URL": url,
            }
            printed = await mqtt_acl(load_settings(environ=environ), hub.data_dir / DATABASE_NAME)
            assert frame.mqtt["password"] not in printed  # hashes only
            cli = await trio.run_process(
                [sys.executable, str(ROOT / "run.py"), "mqtt-acl"],
                env={**os.environ, **environ},
                capture_stdout=True,
            )
            # The same entries (the hub's own line is hashed with a fresh salt each time).
            shown, expected = sections(cli.stdout.decode()), sections(printed)
            assert shown[1] == expected[1]
            assert shown[0].splitlines()[1:] == expected[0].splitlines()[1:]
            assert shown[0].startswith(f"{HUB_USER}:$7$")
            passwords, frames_acl = sections(printed)
            assert f"user {frame.mqtt['username']}\n" in frames_acl
            assert f"topic write frames/{frame.device_id}/#\n" in frames_acl
            broker.reload(passwords, frames_acl)

            async with connect(
                hub.system,
                "127.0.0.1",
                broker.port,
                frame.mqtt["username"],
                frame.mqtt["password"],
                identifier=frame.mqtt["client_id"],
            ) as client:
                await client.subscribe(f"frames/{frame.device_id}/sync", 2)
                sync = msgspec.json.decode(
                    await client.next_on(f"frames/{frame.device_id}/sync"), type=wire.FrameSync
                )
                assert sync.frame_id == frame.device_id
