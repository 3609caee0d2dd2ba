"""The OTA actor's tables and how one transaction's changes are written to them.

``firmware`` (one row per image), ``campaigns``, ``campaign_devices`` (each target's state,
written whole on every change), ``campaign_history`` (one row per state a target entered,
the timestamped history) and ``ota_presence`` (whether each frame was last heard of online,
from ``device.online`` / ``device.offline``).
"""

from __future__ import annotations

from typing import Any

from actors.events import Event
from actors.store import Store, Transaction

from ._messages import Firmware, HistoryEntry
from ._rollout import Campaign, Target

OTA_MIGRATIONS = (
    """
    CREATE TABLE firmware (
        firmware_id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        min_hw_version TEXT NOT NULL,
        notes TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        file_name TEXT NOT NULL,
        uploaded_by TEXT,
        uploaded_at TEXT NOT NULL,
        UNIQUE (model, version)
    );
    CREATE TABLE campaigns (
        campaign_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        firmware_id TEXT NOT NULL,
        state TEXT NOT NULL,
        batch_size INTEGER NOT NULL,
        current_batch INTEGER NOT NULL,
        success_threshold REAL NOT NULL,
        failure_threshold INTEGER,
        failure_threshold_percent REAL,
        pause_reason TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        created_by TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE TABLE campaign_devices (
        campaign_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        state TEXT NOT NULL,
        progress REAL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        command_id TEXT,
        command TEXT,
        previous_version TEXT,
        acknowledged INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (campaign_id, device_id)
    );
    CREATE TABLE campaign_history (
        id INTEGER PRIMARY KEY,
        campaign_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        at TEXT NOT NULL,
        state TEXT NOT NULL,
        progress REAL,
        error TEXT NOT NULL,
        command_id TEXT
    );
    CREATE INDEX campaign_history_device ON campaign_history (campaign_id, device_id, id);
    CREATE TABLE ota_presence (
        device_id TEXT PRIMARY KEY,
        online INTEGER NOT NULL
    );
    """,
)
"""The ``ota`` schema."""

_FIRMWARE_COLUMNS = (
    "firmware_id, version, model, min_hw_version, notes, sha256, size, file_name, "
    "uploaded_at, uploaded_by"
)
_CAMPAIGN_COLUMNS = (
    "campaign_id, name, firmware_id, state, batch_size, current_batch, success_threshold, "
    "failure_threshold, failure_threshold_percent, pause_reason, correlation_id, created_by, "
    "created_at, updated_at, started_at, finished_at"
)
_TARGET_COLUMNS = (
    "campaign_id, device_id, position, state, progress, error, attempts, command_id, command, "
    "previous_version, acknowledged, updated_at"
)


def _placeholders(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


def _updates(columns: str, key: tuple[str, ...]) -> str:
    names = [c.strip() for c in columns.split(",")]
    return ", ".join(f"{n} = excluded.{n}" for n in names if n not in key)


INSERT_FIRMWARE = (
    f"INSERT INTO firmware ({_FIRMWARE_COLUMNS}) VALUES ({_placeholders(_FIRMWARE_COLUMNS)})"
)
_UPSERT_CAMPAIGN = (
    f"INSERT INTO campaigns ({_CAMPAIGN_COLUMNS}) VALUES ({_placeholders(_CAMPAIGN_COLUMNS)}) "
    f"ON CONFLICT (campaign_id) DO UPDATE SET "
    f"{_updates(_CAMPAIGN_COLUMNS, ('campaign_id',))}"
)
_UPSERT_TARGET = (
    f"INSERT INTO campaign_devices ({_TARGET_COLUMNS}) VALUES ({_placeholders(_TARGET_COLUMNS)}) "
    f"ON CONFLICT (campaign_id, device_id) DO UPDATE SET "
    f"{_updates(_TARGET_COLUMNS, ('campaign_id', 'device_id'))}"
)
_INSERT_HISTORY = (
    "INSERT INTO campaign_history (campaign_id, device_id, at, state, progress, error, "
    "command_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_PRESENCE = (
    "INSERT INTO ota_presence (device_id, online) VALUES (?, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET online = excluded.online"
)


def firmware_row(firmware: Firmware) -> tuple[Any, ...]:
    return (
        firmware.firmware_id,
        firmware.version,
        firmware.model,
        firmware.min_hw_version,
        firmware.notes,
        firmware.sha256,
        firmware.size,
        firmware.file_name,
        firmware.uploaded_at,
        firmware.uploaded_by,
    )


class Changes:
    """What one transaction changes, collected so that each campaign and target row is
    written once (as it is when written) and the history in one statement.

    ``write`` adds it all, with the events published meanwhile, to a transaction and starts
    the collection afresh; call it last, before the commit.
    """

    __slots__ = ("_campaigns", "_events", "_history", "_presence", "_targets")

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._campaigns: dict[str, Campaign] = {}
        self._targets: dict[tuple[str, str], tuple[Campaign, Target]] = {}
        self._history: list[tuple[Any, ...]] = []
        self._presence: dict[str, bool | None] = {}

    def publish(self, event: Event) -> None:
        self._events.append(event)

    def campaign(self, campaign: Campaign) -> None:
        self._campaigns[campaign.campaign_id] = campaign

    def target(self, campaign: Campaign, target: Target, *, history: bool = True) -> None:
        """Write ``target`` as it will be; with ``history``, record the state it is in now."""
        self._campaigns[campaign.campaign_id] = campaign
        self._targets[(campaign.campaign_id, target.device_id)] = (campaign, target)
        if history:
            self._history.append(
                (
                    campaign.campaign_id,
                    target.device_id,
                    target.updated_at,
                    target.state,
                    target.progress,
                    target.error,
                    target.command_id,
                )
            )

    def presence(self, device_id: str, online: bool | None) -> None:
        """Record whether the frame is online; None forgets it (unpaired)."""
        self._presence[device_id] = online

    def write(self, tx: Transaction) -> None:
        for event in self._events:
            tx.publish(event)
        tx.executemany(_UPSERT_CAMPAIGN, [_campaign_row(c) for c in self._campaigns.values()])
        tx.executemany(_UPSERT_TARGET, [_target_row(c, t) for c, t in self._targets.values()])
        tx.executemany(_INSERT_HISTORY, self._history)
        for device_id, online in self._presence.items():
            if online is None:
                tx.execute("DELETE FROM ota_presence WHERE device_id = ?", (device_id,))
            else:
                tx.execute(_UPSERT_PRESENCE, (device_id, int(online)))
        self._events.clear()
        self._campaigns.clear()
        self._targets.clear()
        self._history.clear()
        self._presence.clear()


def _campaign_row(c: Campaign) -> tuple[Any, ...]:
    return (
        c.campaign_id,
        c.name,
        c.firmware.firmware_id,
        c.state,
        c.batch_size,
        c.current_batch,
        c.success_threshold,
        c.failure_threshold,
        c.failure_threshold_percent,
        c.pause_reason,
        c.correlation_id,
        c.created_by,
        c.created_at,
        c.updated_at,
        c.started_at,
        c.finished_at,
    )


def _target_row(c: Campaign, t: Target) -> tuple[Any, ...]:
    return (
        c.campaign_id,
        t.device_id,
        t.position,
        t.state,
        t.progress,
        t.error,
        t.attempts,
        t.command_id,
        t.command,
        t.previous_version,
        int(t.acknowledged),
        t.updated_at,
    )


class Loaded:
    """Everything the tables hold, read in ``on_start``."""

    def __init__(
        self,
        firmware: list[Firmware],
        campaigns: list[Campaign],
        presence: dict[str, bool],
    ) -> None:
        self.firmware = firmware
        self.campaigns = campaigns
        self.presence = presence


async def load(store: Store) -> Loaded:
    firmware = [
        Firmware(
            firmware_id=row[0],
            version=row[1],
            model=row[2],
            min_hw_version=row[3],
            notes=row[4],
            sha256=row[5],
            size=row[6],
            file_name=row[7],
            uploaded_at=row[8],
            uploaded_by=row[9],
        )
        for row in await store.fetch_all(
            f"SELECT {_FIRMWARE_COLUMNS} FROM firmware ORDER BY uploaded_at, firmware_id"
        )
    ]
    by_id = {f.firmware_id: f for f in firmware}
    campaigns: dict[str, Campaign] = {}
    for row in await store.fetch_all(
        f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns ORDER BY created_at, campaign_id"
    ):
        campaigns[row[0]] = Campaign(
            campaign_id=row[0],
            name=row[1],
            firmware=by_id[row[2]],
            state=row[3],
            batch_size=row[4],
            current_batch=row[5],
            success_threshold=row[6],
            failure_threshold=row[7],
            failure_threshold_percent=row[8],
            pause_reason=row[9],
            correlation_id=row[10],
            created_by=row[11],
            created_at=row[12],
            updated_at=row[13],
            started_at=row[14],
            finished_at=row[15],
        )
    for row in await store.fetch_all(
        f"SELECT {_TARGET_COLUMNS} FROM campaign_devices ORDER BY campaign_id, position"
    ):
        campaigns[row[0]].add(
            Target(
                device_id=row[1],
                position=row[2],
                state=row[3],
                progress=row[4],
                error=row[5],
                attempts=row[6],
                command_id=row[7],
                command=row[8],
                previous_version=row[9],
                acknowledged=bool(row[10]),
                updated_at=row[11],
            )
        )
    presence = {
        device_id: bool(online)
        for device_id, online in await store.fetch_all("SELECT device_id, online FROM ota_presence")
    }
    return Loaded(firmware, list(campaigns.values()), presence)


async def history(store: Store, campaign_id: str, device_id: str) -> list[HistoryEntry]:
    """Every state the frame entered in the campaign, oldest first."""
    rows = await store.fetch_all(
        "SELECT at, state, progress, error, command_id FROM campaign_history "
        "WHERE campaign_id = ? AND device_id = ? ORDER BY id",
        (campaign_id, device_id),
    )
    return [
        HistoryEntry(at=at, state=state, progress=progress, error=error, command_id=command_id)
        for at, state, progress, error, command_id in rows
    ]
