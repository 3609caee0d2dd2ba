"""Secrets stay secret: tokens and MQTT passwords are kept only hashed and never logged; a
guesser is slowed down; a client's file name never reaches the file system; private files
are private.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import stat
import time
import unicodedata
from pathlib import Path

import aiomqtt
import pytest
import trio

from actors import DATABASE_NAME
from actors.accounts import hash_token
from actors.console import CLOSE_TOO_MANY_FAILURES, CLOSE_UNAUTHORIZED
from actors.ota import SIGNING_KEY_FILE
from tests.harness.frames import device, heartbeat
from tests.harness.http import bearer
from tests.harness.hub import DEVICES, UPLOAD, running_hub
from tests.harness.mqtt import connect
from tests.harness.photos import jpeg
from tests.harness.replies import body_of, download, problem
from tests.harness.security import addresses, console_hello, files_under, leaks, refused
from tests.harness.telemetry import as_frame, broker

FAILED_AUTH_PER_MINUTE = 30
"""The hub's limit of failed authentications per client address and minute (HTTP and the
console): a burst of that many, then one more every two seconds."""


async def test_tokens_and_passwords_are_kept_hashed_and_appear_in_no_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "data"
    tokens: list[str] = []
    passwords: list[str] = []
    async with running_hub(data_dir) as hub:
        admin = await hub.new_user("root", admin=True)
        made = await hub.client.post("/api/v1/users", json={"name": "bob"}, headers=admin.auth)
        bob_token = body_of(made)["token"]
        hall, kitchen = await hub.pair_frame(admin, "Hall"), await hub.pair_frame(admin, "Kitchen")
        tokens += [admin.token, bob_token, hall.token, kitchen.token]
        passwords += [hall.mqtt["password"], kitchen.mqtt["password"]]
        hub_password = (await broker(hub)).hub_password

        # Uploads, albums, a frame on the broker fetching its photo, a command.
        bob = bearer(bob_token)
        album = body_of(await hub.client.post("/api/v1/albums", json={"name": "A"}, headers=bob))
        files = {"file": ("p.jpg", jpeg(seed=3), "image/jpeg")}
        photo = body_of(await hub.client.post(UPLOAD, headers=bob, files=files))["file_id"]
        url = f"/api/v1/albums/{album['album_id']}/photos"
        body_of(await hub.client.post(url, json={"file_id": photo}, headers=bob))
        assign = {"album_ids": [album["album_id"]]}
        url = f"{DEVICES}/{hall.device_id}/albums"
        body_of(await hub.client.put(url, json=assign, headers=admin.auth), 200)
        async with as_frame(hub, hall) as frame:
            await frame.publish(f"frames/{hall.device_id}/heartbeat", heartbeat(hall))

            async def seen() -> bool:
                return bool((await device(hub, admin, hall))["online"])

            await hub.until(seen)
        await hub.analysed()
        await download(hub, hall, f"/api/v1/files/download/{photo}?size=frame")
        commands = f"{DEVICES}/{hall.device_id}/commands"
        body_of(await hub.client.post(commands, json={"command": "next"}, headers=admin.auth), 202)

        # The console: an admin let in, a member and guesses turned away.
        assert await console_hello(hub, admin.token) == (0, "welcome")
        assert (await console_hello(hub, bob_token))[0] != 0
        guesses = [secrets.token_urlsafe(32) for _ in range(3)]
        guesses.append(admin.token[:-2] + "xy")  # a mistyped real token is a secret too
        for guess in guesses:
            assert (await console_hello(hub, guess))[0] == CLOSE_UNAUTHORIZED
        # Failed logins over HTTP, one with the MQTT password as a token.
        for guess in [*guesses, hall.mqtt["password"]]:
            refused(await hub.client.get("/api/v1/me", headers=bearer(guess)), 401)
        # A guessed MQTT password.
        wrong = secrets.token_urlsafe(24)
        passwords.append(wrong)
        with pytest.raises(aiomqtt.MqttError):
            async with connect(
                hub.system, "127.0.0.1", (await broker(hub)).port, hall.mqtt["username"], wrong
            ):
                pass
        # The frame unpaired: its token revoked; its MQTT user gone.
        assert (
            await hub.client.delete(f"{DEVICES}/{kitchen.device_id}", headers=admin.auth)
        ).is_success
        tokens += guesses
        letters = hub.system.dead_letters.entries()
        broker_dir = hub.data_dir / "mosquitto"

    # Every log record (formatted with its traceback), at DEBUG, of every logger.
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    lines += [f"{letter.message} {letter.error} {letter.traceback}" for letter in letters]
    assert any("framehub.http.access" in line for line in lines)
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert any("mosquitto" in line for line in lines)
    for secret in [*tokens, *passwords, hub_password]:
        logged = [line[:60] for line in lines if secret in line or secret[:16] in line]
        assert logged == [], logged

    # At rest: only hashes, in the database (with its WAL) and every other file.
    everything = files_under(data_dir)
    assert [p for p in everything if p.name.startswith(DATABASE_NAME)]
    private = {broker_dir / "hub.secret"}
    assert leaks({p: b for p, b in everything.items() if p not in private}, tokens) == []
    assert leaks(everything, passwords) == []
    assert leaks({p: b for p, b in everything.items() if p not in private}, [hub_password]) == []
    database = sqlite3.connect(data_dir / DATABASE_NAME)
    try:
        stored = {row[0] for row in database.execute("SELECT token_hash FROM api_tokens")}
        frame_hashes = [
            row[0] for row in database.execute("SELECT mqtt_password_hash FROM devices")
        ]
    finally:
        database.close()
    assert {hash_token(t) for t in tokens[:4]} <= stored
    assert all(h.startswith("$7$") for h in frame_hashes) and len(frame_hashes) == 2
    password_file = (broker_dir / "passwd").read_text().splitlines()
    assert [line.split(":", 1)[0] for line in password_file] == [
        "framehub-hub",
        hall.mqtt["username"],
    ]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in password_file)

    # Readable by the hub's user only: the signing key and the broker's files.
    for path, mode in [
        (data_dir / SIGNING_KEY_FILE, 0o600),
        (broker_dir, 0o700),
        *((broker_dir / name, 0o600) for name in ("passwd", "acl", "hub.secret", "mosquitto.conf")),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    # Nothing else it wrote is readable by other local users either: the database, the photos
    # and their versions, the ports file.
    written = [data_dir, *data_dir.rglob("*")]
    assert any(path.name == "framehub.db" for path in written)
    assert any("versions" in path.parts and path.is_file() for path in written)
    exposed = [
        (str(path), oct(path.stat().st_mode))
        for path in written
        if not path.is_symlink() and path.stat().st_mode & 0o077
    ]
    assert exposed == []
    # A key someone made readable to others is made private again when the hub starts.
    os.chmod(data_dir / SIGNING_KEY_FILE, 0o644)
    async with running_hub(data_dir):
        assert stat.S_IMODE((data_dir / SIGNING_KEY_FILE).stat().st_mode) == 0o600


async def test_failed_authentications_are_rate_limited_per_address_over_http_and_the_console(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub, addresses(hub, per_address=10**6) as sources:
        admin = await hub.new_user("root", admin=True)

        # HTTP: a burst of failures, then 429 with Retry-After before any token is checked.
        guesser = await sources.fresh()
        started, refusals = time.monotonic(), 0
        while True:
            response = await guesser.get("/api/v1/me", headers=bearer(secrets.token_urlsafe(32)))
            if response.status_code == 429:
                break
            refused(response, 401)
            refusals += 1
            allowed = FAILED_AUTH_PER_MINUTE + (time.monotonic() - started) / 2 + 1
            assert refusals <= allowed, "failed authentications are not limited"
        assert refusals >= FAILED_AUTH_PER_MINUTE
        limited = refused(response, 429)
        assert "failed" in limited["detail"]
        assert int(response.headers["retry-after"]) >= 1
        # The limit is the guesser's address's: others are served.
        other = await sources.fresh()
        assert (await other.get("/api/v1/me", headers=admin.auth)).status_code == 200

        # The console's hello: the same, closed with 4429.
        started, refusals = time.monotonic(), 0
        while True:
            code, reason = await console_hello(hub, secrets.token_urlsafe(32), "127.0.9.1")
            if code == CLOSE_TOO_MANY_FAILURES:
                break
            assert code == CLOSE_UNAUTHORIZED, (code, reason)
            refusals += 1
            allowed = FAILED_AUTH_PER_MINUTE + (time.monotonic() - started) / 2 + 1
            assert refusals <= allowed, "failed console hellos are not limited"
        assert refusals >= FAILED_AUTH_PER_MINUTE
        assert "retry in" in reason
        assert await console_hello(hub, admin.token, "127.0.9.2") == (0, "welcome")


HOSTILE_NAMES = [
    "../../x.jpg",
    "..\\..\\x.jpg",
    "/etc/passwd.jpg",
    "C:\\Windows\\System32\\x.jpg",
    "a/../../b.jpg",
    "..",
    "....jpg",
    ".hidden.jpg",
    "",
    " ",
    "nul\x00byte.jpg",
    "ctrl\x01\x1b[31m\x7f.jpg",
    "tab\tname.jpg",
    "evil\u202egpj.exe",
    "zero\u200bwidth\ufeff.jpg",
    "line\u2028separator.jpg",
    "%2e%2e%2fx.jpg",
    "x" * 5000 + ".jpg",
    "é" * 300 + ".jpg",
]
"""File names a hostile or broken client sends (CR and LF cannot be in a header)."""


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body with ``name`` as the file part's file name, byte for byte."""
    boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def safe(name: str) -> bool:
    return (
        0 < len(name) <= 200
        and not {"/", "\\"} & set(name)
        and not name.startswith(".")
        and name == name.strip()
        and all(unicodedata.category(ch)[0] not in "CZ" or ch == " " for ch in name)
    )


async def test_upload_file_names_are_made_safe_and_never_reach_the_file_system(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    async with running_hub(data_dir) as hub:
        user = await hub.new_user("alice")
        before = await trio.to_thread.run_sync(lambda: set(tmp_path.rglob("*")))
        kept: dict[str, str] = {}
        for seed, name in enumerate(HOSTILE_NAMES, start=100):
            body, content_type = multipart(name, jpeg(64, 48, seed=seed))
            response = await hub.client.post(
                UPLOAD, content=body, headers={**user.auth, "Content-Type": content_type}
            )
            if response.status_code == 400:
                problem(response, 400)  # refused outright: fine too
                continue
            uploaded = body_of(response, 201)
            shown = body_of(
                await hub.client.get(f"/api/v1/photos/{uploaded['file_id']}", headers=user.auth),
                200,
            )
            assert shown["file_name"] == uploaded["file_name"]
            kept[name] = uploaded["file_name"]
        await hub.analysed()
        created = await trio.to_thread.run_sync(lambda: set(tmp_path.rglob("*")) - before)
    unsafe = {name[:40]: stored for name, stored in kept.items() if not safe(stored)}
    assert unsafe == {}, unsafe
    # Only a name too long for a part header may be refused outright (400) instead.
    assert [len(name) > 1000 for name in HOSTILE_NAMES if name not in kept] in ([], [True])
    assert kept["../../x.jpg"] == "x.jpg" and kept["evil\u202egpj.exe"] == "evilgpj.exe"
    # Files are named by their content's hash, inside the data directory, nowhere else.
    assert [p for p in created if data_dir not in p.parents] == []
    blobs = data_dir / "blobs"
    named = [
        p for p in created if p.is_file() and blobs in p.parents and not _is_hash_named(p.name)
    ]
    assert named == [], named
    for target in (Path("/etc/passwd.jpg"), Path.cwd() / "x.jpg", tmp_path / "x.jpg"):
        assert not target.exists(), target


def _is_hash_named(name: str) -> bool:
    return len(name) == 64 and all(ch in "0123456789abcdef" for ch in name)
