"""Firmware images over the real hub: upload (SHA-256, semantic versions, duplicates, the size
limit), listing, and downloads by admins and frames with resumable ``Range`` requests; and the
hub's signing key handed to frames at pairing."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import wire
from actors.ota import load_signing_key
from tests.harness.hub import running_hub
from tests.harness.ota import FIRMWARE, firmware, image, pair, upload_firmware
from tests.harness.replies import body_of, problem


def staged(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "blobs" / "firmware" / ".staging").iterdir())


async def test_an_uploaded_image_is_recorded_with_its_sha256_once_per_model_and_version(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path, OTA__MAX_FIRMWARE_BYTES="100000") as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("bob")
        data = image(80_000)
        response = await upload_firmware(
            hub, admin, data, version="2.1.0-rc.1+build.7", notes=" faster boot "
        )
        stored = body_of(response, 201)
        assert response.headers["location"] == f"{FIRMWARE}/{stored['firmware_id']}"
        assert stored["sha256"] == hashlib.sha256(data).hexdigest()
        assert (stored["size"], stored["version"], stored["model"]) == (
            80_000,
            "2.1.0-rc.1+build.7",
            "FH-10",
        )
        assert (stored["min_hw_version"], stored["notes"]) == ("rev2", "faster boot")
        blob = hub.data_dir / "blobs" / "firmware" / stored["sha256"][:2] / stored["sha256"]
        assert blob.read_bytes() == data
        (uploaded,) = await hub.events("firmware.uploaded")
        assert (uploaded.firmware_id, uploaded.sha256, uploaded.size) == (
            stored["firmware_id"],
            stored["sha256"],
            80_000,
        )
        assert uploaded.audit.id == admin.user_id

        # The same model and version again (other bytes): a conflict; another model is fine.
        again = problem(
            await upload_firmware(hub, admin, image(1000), version="2.1.0-rc.1+build.7"), 409
        )
        assert stored["firmware_id"] in again["detail"]
        other = await firmware(hub, admin, image(1000), version="2.1.0-rc.1+build.7", model="X")
        listed = body_of(await hub.client.get(FIRMWARE, headers=admin.auth), 200)
        assert [f["firmware_id"] for f in listed["items"]] == [
            other["firmware_id"],
            stored["firmware_id"],
        ]
        shown = body_of(
            await hub.client.get(f"{FIRMWARE}/{stored['firmware_id']}", headers=admin.auth), 200
        )
        assert shown == stored

        for fields, needle in (
            ({"version": "1.2"}, "semantic version"),
            ({"version": "v1.2.3"}, "semantic version"),
            ({"version": "01.2.3"}, "semantic version"),
            ({"version": None}, "version is required"),
            ({"model": None}, "model is required"),
            ({"min_hw_version": "  "}, "min_hw_version is required"),
            ({"model": "FH\x0710"}, "control characters"),
        ):
            refused = problem(await upload_firmware(hub, admin, image(1000), **fields), 422)
            assert needle in refused["detail"], (fields, refused)
        assert (
            "empty"
            in problem(await upload_firmware(hub, admin, b"", version="3.0.0"), 422)["detail"]
        )
        too_big = problem(await upload_firmware(hub, admin, image(100_001), version="3.0.0"), 413)
        assert "100000" in too_big["detail"]
        problem(await upload_firmware(hub, member, image(1000), version="3.0.0"), 403)
        not_multipart = await hub.client.post(
            FIRMWARE, headers=admin.auth, content=b"{}", params={"version": "3.0.0"}
        )
        problem(not_multipart, 415)
        # Nothing refused was kept, nothing is left staged.
        assert len(body_of(await hub.client.get(FIRMWARE, headers=admin.auth), 200)["items"]) == 2
        assert staged(hub.data_dir) == []


async def test_admins_and_frames_download_firmware_and_a_range_resumes_it(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("bob")
        frame = await pair(hub, admin, "Hall")
        data = image(200_000)
        stored = await firmware(hub, admin, data)
        url = f"{FIRMWARE}/{stored['firmware_id']}/download"
        etag = f'"{stored["sha256"]}"'

        whole = await hub.client.get(url, headers=frame.auth)
        assert whole.status_code == 200
        assert whole.content == data
        assert whole.headers["etag"] == etag
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "application/octet-stream"
        assert (await hub.client.get(url, headers=admin.auth)).content == data

        # An interrupted download picks up where it stopped.
        partial = await hub.client.get(url, headers={**frame.auth, "Range": "bytes=150000-"})
        assert partial.status_code == 206
        assert partial.content == data[150_000:]
        assert partial.headers["content-range"] == f"bytes 150000-199999/{len(data)}"
        middle = await hub.client.get(
            url, headers={**frame.auth, "Range": "bytes=1000-1999", "If-Range": etag}
        )
        assert (middle.status_code, middle.content) == (206, data[1000:2000])
        unchanged = await hub.client.get(url, headers={**frame.auth, "If-None-Match": etag})
        assert (unchanged.status_code, unchanged.content) == (304, b"")
        beyond = await hub.client.get(url, headers={**frame.auth, "Range": "bytes=300000-"})
        assert beyond.status_code == 416

        # Frames read the records too; a member does not; nobody without a token.
        listed = body_of(await hub.client.get(FIRMWARE, headers=frame.auth), 200)
        assert [f["firmware_id"] for f in listed["items"]] == [stored["firmware_id"]]
        for path in (url, FIRMWARE, f"{FIRMWARE}/{stored['firmware_id']}"):
            problem(await hub.client.get(path, headers=member.auth), 403)
            problem(await hub.client.get(path), 401)
        problem(await upload_firmware(hub, frame, image(1000)), 403)
        unknown = f"{FIRMWARE}/{'0' * 32}"
        problem(await hub.client.get(unknown, headers=admin.auth), 404)
        problem(await hub.client.get(f"{unknown}/download", headers=frame.auth), 404)


async def test_pairing_hands_the_frame_the_hubs_signing_key(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await pair(hub, admin, "Hall")
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(frame.public_key))
        # Signed with the key the hub keeps in its data directory: it verifies.
        hub_key = load_signing_key(hub.data_dir)
        args = wire.CommandArgs(version="1.0.0", campaign_id="c1")
        signature = hub_key.sign(frame.device_id, "cmd-1", "rollback_firmware", args)
        signed = wire.signed_command_bytes(frame.device_id, "cmd-1", "rollback_firmware", args)
        key.verify(base64.b64decode(signature), signed)
        second = await pair(hub, admin, "Kitchen")
        assert second.public_key == frame.public_key


async def test_the_firmware_form_is_documented_and_the_ota_limit_applies(tmp_path: Path) -> None:
    """The route streams the body itself (the OTA actor's size limit, not the gateway's), yet
    ``/openapi.json`` still describes its multipart form."""
    async with running_hub(tmp_path, OTA__MAX_FIRMWARE_BYTES="4096") as hub:
        admin = await hub.new_user(admin=True)
        document = body_of(await hub.client.get("/openapi.json", headers=admin.auth), 200)
        body = document["paths"]["/api/v1/firmware"]["post"]["requestBody"]
        schema = body["content"]["multipart/form-data"]["schema"]
        assert set(schema["properties"]) == {"file", "version", "model", "min_hw_version", "notes"}
        assert problem(await upload_firmware(hub, admin, image(8192)), 413)
        assert body_of(await upload_firmware(hub, admin, image(2048)), 201)["size"] == 2048
