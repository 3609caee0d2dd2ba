"""``run.py mqtt-acl``: what an external broker's administrator installs for framehub."""

from __future__ import annotations

from pathlib import Path

from actors.devices import hash_password, read_frame_access
from actors.mqtt import HUB_USERNAME, acl_text
from actors.store import Store
from config import Settings
from supervision import open_asyncio_bridge


async def mqtt_acl(settings: Settings, database: Path) -> str:
    """A mosquitto password file and ACL file for the hub and every paired frame.

    Frames' passwords appear only as the ``$7$`` hashes the hub keeps; the hub's own line is
    hashed from the password in ``[mqtt] url`` when there is one.
    """
    async with open_asyncio_bridge() as bridge, Store.open(database, bridge) as store:
        frames = await read_frame_access(store)
    mqtt = settings.mqtt
    hub_user = mqtt.username or HUB_USERNAME
    passwords = [f"{frame.username}:{frame.password_hash}" for frame in frames]
    if mqtt.password:
        passwords.insert(0, f"{hub_user}:{hash_password(mqtt.password)}")
    return "\n".join(
        [
            "# --- password_file (mosquitto_passwd format) ---",
            *passwords,
            "",
            "# --- acl_file ---",
            acl_text(frames, hub_user).rstrip("\n"),
            "",
        ]
    )
