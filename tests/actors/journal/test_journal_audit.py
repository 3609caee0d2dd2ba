"""The audit log: one JSON line per journal event, saying who did what, with its correlation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import trio

from actors.events import Audit, DeviceDeleted
from actors.journal import AuditLog, Journal
from supervision import ChildSpec
from tests.harness.journal import (
    deleted,
    has_cursor,
    open_hub,
    publish,
    until_committed,
    uploaded,
)


class Lines(logging.Handler):
    """Collects the formatted audit lines and wakes the test on each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.changed.set()
        self.changed = trio.Event()


async def test_the_audit_log_writes_one_json_line_per_event(tmp_path: Path) -> None:
    audit = logging.getLogger("framehub.audit")
    lines = Lines()
    audit.addHandler(lines)
    level = audit.level
    audit.setLevel(logging.INFO)

    def children(journal: Journal) -> list[ChildSpec[Any]]:
        return [ChildSpec("audit", lambda: AuditLog(journal))]

    try:
        async with open_hub(tmp_path / "hub.db", children) as hub:
            events = [
                uploaded("f1", user="alice", correlation="upload-1"),
                deleted("f1", user="bob"),
                DeviceDeleted(audit=Audit.frame("frame-7"), device_id="frame-7"),
                DeviceDeleted(audit=Audit.system("registry"), device_id="frame-8"),
            ]
            with trio.fail_after(10):
                entries = await publish(hub.store, *events[:2])
                entries += await publish(hub.store, *events[2:])
                while len(lines.lines) < len(events):
                    await lines.changed.wait()
                # Its cursor moved past them: they will not be logged again after a restart.
                last = entries[-1].seq
                await until_committed(hub.store, lambda: has_cursor(hub.store, "audit", last))
    finally:
        audit.removeHandler(lines)
        audit.setLevel(level)

    records = [json.loads(line) for line in lines.lines]
    assert [(r["seq"], r["event"], r["who"]) for r in records] == [
        (1, "file.uploaded", "user:alice"),
        (2, "file.deleted", "user:bob"),
        (3, "device.deleted", "frame:frame-7"),
        (4, "device.deleted", "system:registry"),
    ]
    assert [r["correlation_id"] for r in records] == [e.correlation_id for e in events]
    assert records[0]["correlation_id"] == "upload-1"
    assert [r["at"] for r in records] == [e.occurred_at for e in events]
