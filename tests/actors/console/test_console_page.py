"""The operator console's page: served without a token, told where the WebSocket listens, and
driven in a real browser (Debian's Chromium through Playwright) against the whole hub with a
simulated frame on the wall.

The browser part (``tests/harness/console_browser.py``) runs in a child process, since
Playwright's asyncio loop must not meet the hub's Trio and trio-asyncio: it logs in (a bad
token first), sees the tree and the frame with its thumbnail, clicks "next" and sees the
thumbnail change, injects a crash on ``/domain/album`` and sees its restart count rise, then
crashes the console server itself and sees the page reconnect. It waits on what the page
shows, never on the clock, and asks this process (over its stdout/stdin) to send the message
that makes an injected fault fire. Screenshots (laptop and phone) are kept as artifacts.
Under ``CI=true`` the browser test fails rather than skips when Chromium or Playwright is
missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.console import GetConsoleAddress
from supervision import ActorCrashed
from tests.harness import ROOT
from tests.harness.hub import Hub, User, running_hub
from tests.harness.replies import body_of, problem
from tests.harness.wall import displayed, new_album, show_album, simulate, upload

CHROMIUM = Path("/usr/bin/chromium")
BROWSER = ROOT / "tests" / "harness" / "console_browser.py"
BROWSER_TIMEOUT_S = 60


async def test_the_page_and_its_assets_are_served_without_a_token(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        page = await hub.client.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/console/console.js">' in page.text
        script = await hub.client.get("/console/console.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "PROTOCOL_VERSION = 1" in script.text
        style = await hub.client.get("/console/console.css")
        assert (style.status_code, style.headers["content-type"][:8]) == (200, "text/css")
        problem(await hub.client.get("/console/secrets.txt"), 404)
        problem(await hub.client.get("/console/..%2Fconsole.py"), 404)

        config = body_of(await hub.client.get("/console/config.json"), 200)
        ports = json.loads((hub.data_dir / "ports.json").read_text())
        assert config == {"ws_url": f"ws://127.0.0.1:{ports['console']}/"}
        # The host the browser used, not the one the hub binds.
        seen = await hub.client.get("/console/config.json", headers={"Host": "frames.lan:8080"})
        assert body_of(seen, 200) == {"ws_url": f"ws://frames.lan:{ports['console']}/"}


def _browser_available() -> None:
    """Skip (outside CI only) when Chromium or Playwright is missing."""
    reasons = []
    if not CHROMIUM.exists():
        reasons.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reasons.append("the playwright package is missing (pip install -e '.[dev]')")
    if reasons and os.environ.get("CI") == "true":
        pytest.fail("; ".join(reasons))
    if reasons:
        pytest.skip("; ".join(reasons))


async def test_an_operator_logs_in_watches_a_frame_and_crashes_an_actor(tmp_path: Path) -> None:
    _browser_available()
    async with running_hub(tmp_path / "hub") as hub:
        admin = await hub.new_user("operator", admin=True)
        album = await new_album(hub, admin)
        file_ids = {await upload(hub, admin, album, seed=seed) for seed in (11, 12)}
        await hub.analysed()
        async with simulate(hub, admin, tmp_path / "sim", 1) as frames:
            (frame_id,) = frames.frame_ids()
            await show_album(hub, admin, [frame_id], album)
            await frames.wait_for(lambda e: any(displayed(f, frame_id)(e) for f in file_ids))

            screenshot = tmp_path / "console.png"
            await _run_browser(
                {
                    "chromium": str(CHROMIUM),
                    "base_url": hub.address.base_url,
                    "token": admin.token,
                    "name": admin.name,
                    "frame_id": frame_id,
                    "file_ids": sorted(file_ids),
                    "screenshot": str(screenshot),
                },
                on_poke=lambda what: _poke(hub, admin, what),
            )
    _keep(screenshot)


def _keep(screenshot: Path) -> None:
    """Check the screenshots (laptop and phone) and copy them to ``$FRAMEHUB_ARTIFACTS`` when
    that is set."""
    shots = [screenshot, screenshot.with_name(f"{screenshot.stem}-phone.png")]
    for shot in shots:
        assert shot.stat().st_size > 0, shot
    artifacts = os.environ.get("FRAMEHUB_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(artifacts) / shot.name)


async def _run_browser(
    arguments: dict[str, Any], on_poke: Callable[[str], Awaitable[None]]
) -> None:
    """``console_browser.py`` in a child process; ``on_poke`` when it asks; fails on its
    failure (with its stderr) or after ``BROWSER_TIMEOUT_S``."""
    process = await trio.lowlevel.open_process(
        [sys.executable, str(BROWSER), json.dumps(arguments)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=BROWSER.parent,
    )
    assert process.stdin and process.stdout and process.stderr
    errors = bytearray()
    lines = []

    async def collect_errors() -> None:
        assert process.stderr
        async for chunk in process.stderr:
            errors.extend(chunk)

    try:
        with trio.fail_after(BROWSER_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect_errors)
                buffered = b""
                async for chunk in process.stdout:
                    buffered += chunk
                    while b"\n" in buffered:
                        line, buffered = buffered.split(b"\n", 1)
                        lines.append(line.decode())
                        if line.startswith(b"poke"):
                            await on_poke(line.decode())
                            await process.stdin.send_all(b"done\n")
                status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
    assert status == 0 and lines[-1:] == ["ok"], (status, lines, errors.decode(errors="replace"))


async def _poke(hub: Hub, admin: User, what: str) -> None:
    """One message to the actor the browser injected a crash on, so that the fault fires:
    ``/domain/album`` (listing albums) or ``/edge/console`` (asking where it listens)."""
    if what == "poke":
        await hub.client.get("/api/v1/albums", headers=admin.auth)
    else:
        assert what == "poke-console", what
        with contextlib.suppress(ActorCrashed):
            await hub.refs.console.ask(GetConsoleAddress())
