"""``run.py upload`` against a real hub: files go in over HTTP, into the named album."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trio
from PIL import Image

from actors import RunningHub, serve
from actors.accounts import CreateUser
from config import load_settings
from tests.harness import ROOT


async def test_upload_command_sends_photos_into_an_album_and_reports_refusals(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "hub"
    settings = load_settings(
        environ={
            "FRAMEHUB_DATA_DIR": str(data_dir),
            "FRAMEHUB_HTTP__PORT": "0",
            "FRAMEHUB_MQTT__PORT": "0",
        }
    )
    photos = []
    for k, colour in enumerate(["red", "green"]):
        path = tmp_path / f"photo{k}.jpg"
        Image.new("RGB", (64, 48), colour).save(path)
        photos.append(path)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    outcome: dict[str, object] = {}

    async def on_ready(hub: RunningHub) -> None:
        user = await hub.refs.accounts.ask(CreateUser(name="carol", admin=False))
        environment = {
            **os.environ,
            "FRAMEHUB_DATA_DIR": str(data_dir),
            "FRAMEHUB_TOKEN": user.token,
            "PYTHONPATH": str(ROOT),
        }
        result = await trio.run_process(
            [
                sys.executable,
                str(ROOT / "run.py"),
                "upload",
                *map(str, photos),
                str(text),
                "--album",
                "Trip",
            ],
            env=environment,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        outcome["code"] = result.returncode
        outcome["stderr"] = result.stderr.decode()
        port = json.loads((data_dir / "ports.json").read_text())["http"]
        import httpx

        headers = {"Authorization": f"Bearer {user.token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as api:
            albums = (await api.get("/api/v1/albums")).json()["items"]
            assert albums, outcome["stderr"]
            outcome["albums"] = albums
            detail = (await api.get(f"/api/v1/albums/{albums[0]['album_id']}")).json()
            outcome["in_album"] = len(detail["file_ids"])
            outcome["photos"] = len((await api.get("/api/v1/photos")).json()["items"])
        raise _Done

    class _Done(Exception):
        pass

    try:
        with trio.fail_after(60):
            await serve(settings, on_ready=on_ready)
    except _Done:
        pass
    assert outcome["code"] == 1, outcome["stderr"]  # one file was refused
    stderr = str(outcome["stderr"])
    assert "2 of 3 uploaded" in stderr
    assert "notes.jpg: refused: content is text" in stderr
    assert [album["name"] for album in outcome["albums"]] == ["Trip"]  # type: ignore[attr-defined]
    assert outcome["in_album"] == 2
    assert outcome["photos"] == 2


async def test_health_command_tells_a_ready_hub_from_a_stopped_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    environment = {**os.environ, "FRAMEHUB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    health = [sys.executable, str(ROOT / "run.py"), "health"]
    settings = load_settings(
        environ={
            "FRAMEHUB_DATA_DIR": str(data_dir),
            "FRAMEHUB_HTTP__PORT": "0",
            "FRAMEHUB_MQTT__PORT": "0",
        }
    )
    outcome: dict[str, object] = {}

    class _Done(Exception):
        pass

    async def on_ready(hub: RunningHub) -> None:
        result = await trio.run_process(
            health, env=environment, capture_stdout=True, capture_stderr=True, check=False
        )
        outcome["ready"] = (result.returncode, result.stdout.decode())
        raise _Done

    try:
        with trio.fail_after(60):
            await serve(settings, on_ready=on_ready)
    except _Done:
        pass
    code, out = outcome["ready"]  # type: ignore[misc]
    assert code == 0 and "is ready" in out
    # The hub is gone (its ports.json says where it was): health now fails with the reason.
    stopped = await trio.run_process(
        health, env=environment, capture_stdout=True, capture_stderr=True, check=False
    )
    assert stopped.returncode == 1
    assert "no answer" in stopped.stderr.decode() or "not running" in stopped.stderr.decode()
