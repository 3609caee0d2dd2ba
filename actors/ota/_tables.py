"""The OTA actor's tables and how one transaction's changes are written to them.

``firmware`` (one row per image), ``campaigns``, ``campaign_devices`` (each target's state,
written whole on every change), ``campaign_history`` (one row per state a target entered,
the timestamped history) and ``ota_presence`` (whether each frame was last heard of online,
from ``device.online`` / ``device.offline``).
"""

from __future__ import annotations

from typing import Any

from actors.events import Event
from actors.store import Rows, Store, Transaction

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

FIRMWARE = Rows(Firmware)
_CAMPAIGNS = Rows(
    Campaign, omit={"firmware", "targets", "by_device", "counts", "failures", "waiting"}
)
"""A ``campaigns`` row is a ``Campaign`` without its targets, then its ``firmware_id``."""
_TARGETS = Rows(Target, omit={"deadline"})
"""A ``campaign_devices`` row is its ``campaign_id``, then a ``Target``."""
_HISTORY = Rows(HistoryEntry)


def _upsert(table: str, columns: str, key: tuple[str, ...]) -> str:
    names = [c.strip() for c in columns.split(",")]
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
        + ", ".join(f"{n} = excluded.{n}" for n in names if n not in key)
    )


INSERT_FIRMWARE = FIRMWARE.insert("firmware")
_UPSERT_CAMPAIGN = _upsert("campaigns", f"{_CAMPAIGNS.columns}, firmware_id", ("campaign_id",))
_UPSERT_TARGET = _upsert(
    "campaign_devices", f"campaign_id, {_TARGETS.columns}", ("campaign_id", "device_id")
)
_INSERT_HISTORY = (
    f"INSERT INTO campaign_history (campaign_id, device_id, {_HISTORY.columns}) "
    f"VALUES (?, ?, {_HISTORY.placeholders})"
)
_UPSERT_PRESENCE = (
    "INSERT INTO ota_presence (device_id, online) VALUES (?, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET online = excluded.online"
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
        tx.executemany(
            _UPSERT_CAMPAIGN,
            [(*_CAMPAIGNS.values(c), c.firmware.firmware_id) for c in self._campaigns.values()],
        )
        tx.executemany(
            _UPSERT_TARGET,
            [(c.campaign_id, *_TARGETS.values(t)) for c, t in self._targets.values()],
        )
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
    firmware = FIRMWARE.all(
        await store.fetch_all(
            f"SELECT {FIRMWARE.columns} FROM firmware ORDER BY uploaded_at, firmware_id"
        )
    )
    by_id = {f.firmware_id: f for f in firmware}
    campaigns: dict[str, Campaign] = {}
    for row in await store.fetch_all(
        f"SELECT {_CAMPAIGNS.columns}, firmware_id FROM campaigns ORDER BY created_at, campaign_id"
    ):
        campaign = _CAMPAIGNS.of_with(row, firmware=by_id[row[len(_CAMPAIGNS)]])
        campaigns[campaign.campaign_id] = campaign
    for row in await store.fetch_all(
        f"SELECT campaign_id, {_TARGETS.columns} FROM campaign_devices "
        "ORDER BY campaign_id, position"
    ):
        campaigns[row[0]].add(_TARGETS.of(row[1:]))
    presence = {
        device_id: bool(online)
        for device_id, online in await store.fetch_all("SELECT device_id, online FROM ota_presence")
    }
    return Loaded(firmware, list(campaigns.values()), presence)


async def history(store: Store, campaign_id: str, device_id: str) -> list[HistoryEntry]:
    """Every state the frame entered in the campaign, oldest first."""
    return _HISTORY.all(
        await store.fetch_all(
            f"SELECT {_HISTORY.columns} FROM campaign_history "
            "WHERE campaign_id = ? AND device_id = ? ORDER BY id",
            (campaign_id, device_id),
        )
    )
