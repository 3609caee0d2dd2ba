"""The whole hub, started by ``actors.serve`` as ``run.py serve`` starts it, driven over HTTP.

``running_hub`` runs ``serve`` (the production tree from ``hub_tree``, the real settings
loader, a data directory under ``tmp_path``, an HTTP port picked by the OS) and stops it the
way an operator does, with SIGTERM, so its graceful shut-down runs too. ``Hub`` is the
test's handle: an ``httpx.AsyncClient`` on the real socket, the actor system (for fault
injection and snapshots), and views of the data directory (blob files, staged uploads, the
journal).
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

from actors import DATABASE_NAME, HubBlobs, HubRefs, RunningHub, serve
from actors.accounts import CreateUser
from actors.album import ListAlbums
from actors.events import AnyEvent
from actors.http import GetHttpAddress, HttpAddress
from actors.media import ListPhotos
from actors.store import Store
from actors.uploader import AwaitAnalyses
from config import load_settings
from supervision import ActorCrashed, ActorSystem
from tests.harness.journal import until_committed

_decode_event = msgspec.json.Decoder(AnyEvent).decode

UPLOAD = "/api/v1/storage/photos/upload"
DEVICES = "/api/v1/devices"


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Frame:
    """A frame paired over ``POST /api/v1/devices``, with the token the pairing showed."""

    device_id: str
    name: str
    token: str
    mqtt: dict[str, Any] = field(default_factory=dict)
    """The MQTT credentials the pairing showed: host, port, client_id, username, password."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Hub:
    system: ActorSystem
    data_dir: Path
    address: HttpAddress
    client: httpx.AsyncClient
    store: Store
    refs: HubRefs
    blobs: HubBlobs
    _names: int = field(default=0)

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
        """Wait until ``check`` holds, re-checking after each commit of the hub's database
        (the hub records every change it makes there): no polling, bounded by ``timeout``."""
        with trio.fail_after(timeout):
            await until_committed(self.store, check)

    async def events(self, name: str) -> list[Any]:
        """The journal's events called ``name``, decoded, in order."""
        rows = await self.store.fetch_all(
            "SELECT payload FROM events WHERE name = ? ORDER BY seq", (name,)
        )
        return [_decode_event(row[0]) for row in rows]

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    async def new_user(self, name: str | None = None, *, admin: bool = False) -> User:
        """A user made through ``/domain/accounts``, as ``run.py users add`` makes them."""
        if name is None:
            self._names += 1
            name = f"member{self._names}"
        made = await self.refs.accounts.ask(CreateUser(name=name, admin=admin))
        return User(made.user_id, made.name, made.token)

    async def pair_frame(
        self,
        admin: User,
        name: str = "Hall",
        *,
        width: int = 1024,
        height: int = 600,
        orientation: str = "landscape",
    ) -> Frame:
        """A frame paired by ``admin`` as the admin app pairs one."""
        response = await self.client.post(
            DEVICES,
            json={
                "name": name,
                "model": "FH-10",
                "hw_version": "rev2",
                "width": width,
                "height": height,
                "orientation": orientation,
            },
            headers=admin.auth,
        )
        assert response.status_code == 201, (response.status_code, response.text)
        paired = response.json()
        return Frame(paired["device_id"], paired["name"], paired["token"], paired["mqtt"])

    async def new_album(self, user: User, name: str) -> str:
        """An album of ``user``'s made over HTTP; its id."""
        response = await self.client.post("/api/v1/albums", json={"name": name}, headers=user.auth)
        assert response.status_code == 201, (response.status_code, response.text)
        album_id: str = response.json()["album_id"]
        return album_id

    async def show_albums(self, admin: User, frame_ids: list[str], album_ids: list[str]) -> None:
        """Assign ``album_ids`` to each of ``frame_ids`` over HTTP."""
        for frame_id in frame_ids:
            response = await self.client.put(
                f"{DEVICES}/{frame_id}/albums", json={"album_ids": album_ids}, headers=admin.auth
            )
            assert response.status_code == 200, (response.status_code, response.text)

    async def upload(
        self,
        user: User,
        data: bytes,
        file_name: str = "photo.jpg",
        *,
        content_type: str = "image/jpeg",
        metadata: dict[str, str] | str | None = None,
    ) -> httpx.Response:
        """``POST`` a photo as the phone app does: one ``file`` part, optional ``metadata``."""
        fields: dict[str, Any] = {}
        if metadata is not None:
            fields["metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
        return await self.client.post(
            UPLOAD,
            headers=user.auth,
            files={"file": (file_name, data, content_type)},
            data=fields,
        )

    async def analysed(self) -> None:
        """Wait until every committed upload is analysed, versioned and filed.

        Analysis (and so ``file.uploaded.with_ai``, the versions and album filing) follows an
        upload asynchronously. The uploader answers ``AwaitAnalyses`` once no analysis is in
        progress; then a query to the media cache and to the album actor, each of
        which handles every event already in the journal before it answers, returns once they
        have caught up too. (Queries rather than ``JournalNudge``, so that fault rules on
        ``JournalNudge`` count only the hub's own nudges.)
        """
        while True:
            try:
                await self.refs.uploader.ask(AwaitAnalyses(), timeout=60)
                break
            except ActorCrashed:
                continue  # a crash test: the next incarnation takes the analyses up again
        await self.refs.media.ask(ListPhotos(user_id="", base_url=""))
        await self.refs.album.ask(ListAlbums(user_id=""))

    def blob_files(self) -> set[Path]:
        """Every blob file (originals and versions), staging excluded."""
        return {
            path
            for path in self.blobs_dir.rglob("*")
            if path.is_file() and ".staging" not in path.relative_to(self.blobs_dir).parts
        }

    def staged_files(self) -> list[Path]:
        return sorted((self.blobs_dir / "originals" / ".staging").iterdir())

    async def event_names(self, file_id: str) -> list[str]:
        """Names of the journal's events whose payload mentions ``file_id``, in order."""

        def query() -> list[str]:
            db = sqlite3.connect(self.data_dir / DATABASE_NAME)
            try:
                rows = db.execute(
                    "SELECT name FROM events WHERE CAST(payload AS TEXT) LIKE ? ORDER BY seq",
                    (f"%{file_id}%",),
                ).fetchall()
            finally:
                db.close()
            return [str(row[0]) for row in rows]

        return await trio.to_thread.run_sync(query)


@asynccontextmanager
async def running_hub(data_dir: Path, **settings: str) -> AsyncIterator[Hub]:
    """``actors.serve`` on ``data_dir`` with ``FRAMEHUB_<...>`` ``settings`` (keys without the
    prefix, e.g. ``HTTP__MAX_UPLOAD_BYTES="200000"``); stopped with SIGTERM at the end."""
    environ = {
        "FRAMEHUB_DATA_DIR": str(data_dir),
        "FRAMEHUB_HTTP__HOST": "127.0.0.1",
        "FRAMEHUB_HTTP__PORT": "0",
        "FRAMEHUB_MQTT__PORT": "0",
        "FRAMEHUB_CONSOLE__HOST": "127.0.0.1",
        "FRAMEHUB_CONSOLE__PORT": "0",
        "FRAMEHUB_LOG_LEVEL": "WARNING",
        **{f"FRAMEHUB_{key}": value for key, value in settings.items()},
    }
    hub_settings = load_settings(environ=environ)
    hubs: list[RunningHub] = []
    ready = trio.Event()
    serving = False

    async def on_ready(hub: RunningHub) -> None:
        nonlocal serving
        hubs.append(hub)
        serving = True
        ready.set()

    async def run() -> None:
        nonlocal serving
        try:
            await serve(hub_settings, on_ready=on_ready)
        finally:
            serving = False

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(30):
            await ready.wait()
        running = hubs[0]
        address = await running.refs.http.ask(GetHttpAddress())
        ports = json.loads((data_dir / "ports.json").read_text())
        assert ports["http"] == address.port, (ports, address)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{address.port}", timeout=60.0
            ) as client:
                yield Hub(
                    running.system,
                    data_dir,
                    address,
                    client,
                    running.store,
                    running.refs,
                    running.blobs,
                )
        except BaseException:
            # The test failed: stop at once. (No SIGTERM here: a signal that serve's receiver
            # has not consumed when it closes is re-raised by Trio, killing the test run.)
            nursery.cancel_scope.cancel()
            raise
        # The operator's way out, and serve's graceful shut-down: its own signal receiver
        # takes the signal (only sent while serve runs, so the process never gets a SIGTERM
        # nobody handles), and the nursery waits for serve to return.
        if serving:
            signal.raise_signal(signal.SIGTERM)
