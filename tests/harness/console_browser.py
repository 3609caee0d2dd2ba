"""The browser half of the console page's test, run as a child process (``python
console_browser.py '<json>'``): Playwright's synchronous API drives Debian's Chromium.

It is a process of its own because Playwright runs an asyncio loop, which must not meet the
hub's Trio (and trio-asyncio) in the test process. The parent is asked to act on the hub by a
line on stdout (``poke``: a message to ``/domain/album``; ``poke-console``: one to
``/edge/console``) and answers ``done`` on stdin; the last line is ``ok``. Everything
waits on what the page shows (selectors and conditions with timeouts), never on the clock.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

TIMEOUT_MS = 15_000


def _ask_parent(what: str) -> None:
    print(what, flush=True)
    answer = sys.stdin.readline().strip()
    assert answer == "done", answer


def drive(
    *,
    chromium: str,
    base_url: str,
    token: str,
    name: str,
    frame_id: str,
    file_ids: list[str],
    screenshot: str,
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base_url}/console")

            # A token the hub does not know is refused, and the form says so.
            page.fill("#token", "not-a-token")
            page.click("#login-form button[type=submit]")
            page.wait_for_function(
                "() => document.querySelector('#login-error').textContent.includes('not accepted')"
            )
            assert page.is_visible("#login-form") and not page.is_visible("#app")

            # Log in; the supervision tree arrives over the WebSocket.
            page.fill("#token", token)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#status[data-state=online]")
            assert page.text_content("#who") == name
            album_row = page.wait_for_selector('#tree tr[data-path="/domain/album"]')
            assert album_row is not None
            restarts = int(album_row.get_attribute("data-restarts") or "-1")
            assert restarts >= 0, restarts

            # The frame, online, with a thumbnail (a blob) of the photo it shows.
            card = f'.frame[data-frame-id="{frame_id}"]'
            page.wait_for_selector(f'{card}[data-online="true"]')
            thumb = f"{card} img.thumb"
            page.wait_for_function(
                "s => (document.querySelector(s)?.dataset.fileId || '') !== ''", arg=thumb
            )
            first = page.get_attribute(thumb, "data-file-id")
            assert first in file_ids, (first, file_ids)
            assert (page.get_attribute(thumb, "src") or "").startswith("blob:")

            # "next": the frame moves on to the other photo, and so does its thumbnail.
            page.click(f"{card} button[data-action=next]")
            page.wait_for_selector("#replies li[data-ok=true]")
            page.wait_for_function(
                "([s, first]) => { const id = document.querySelector(s)?.dataset.fileId;"
                " return Boolean(id) && id !== first; }",
                arg=[thumb, first],
            )
            second = page.get_attribute(thumb, "data-file-id")
            assert second in file_ids and second != first, (first, second, file_ids)

            # A crash injected on /domain/album: once a message reaches it, it restarts.
            page.fill("#fault-path", "/domain/album")
            page.fill("#fault-times", "1")
            page.click("#fault-form button[type=submit]")
            page.wait_for_selector("#faults li[data-rule-id]")
            _ask_parent("poke")
            page.wait_for_function(
                "n => { const row = document.querySelector("
                "'#tree tr[data-path=\"/domain/album\"]');"
                " return Boolean(row) && Number(row.dataset.restarts) > n; }",
                arg=restarts,
            )

            # The console server itself crashes (the next message it gets, which the parent
            # sends): the page reconnects on its own and sees the restart in the new tree.
            page.fill("#fault-path", "/edge/console")
            page.click("#fault-form button[type=submit]")
            page.wait_for_selector("#faults li[data-rule-id]:nth-child(2)")
            _ask_parent("poke-console")
            page.wait_for_function(
                "() => { const row = document.querySelector("
                "'#tree tr[data-path=\"/edge/console\"]');"
                " return Boolean(row) && Number(row.dataset.restarts) > 0; }"
            )
            page.wait_for_selector("#status[data-state=online]")
            page.wait_for_function("() => Number(document.body.dataset.welcomes) >= 2")
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=screenshot, full_page=True)
            # The same page on a phone: one column, nothing wider than the screen.
            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            phone = Path(screenshot).with_name(Path(screenshot).stem + "-phone.png")
            page.screenshot(path=str(phone), full_page=True)
            assert errors == [], errors
        finally:
            browser.close()


if __name__ == "__main__":
    drive(**json.loads(sys.argv[1]))
    print("ok", flush=True)
