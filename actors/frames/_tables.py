"""The frames' tables and the statements that read and write them.

``frame_twins``: one row per frame, what its proxy rebuilds its twin from at start (desired
version and its digest, the reported state); ``last_seen`` and ``free_bytes`` are also written
by the fleet, from the proxies' sightings. ``frame_commands``: the commands sent to each frame,
the pending ones with their deadline (Unix seconds), the finished ones with their outcome
(the newest ``MAX_KEPT_COMMANDS`` of each frame are kept).
"""

from __future__ import annotations

import msgspec

from actors.events import utc_now
from actors.store import Rows, Transaction

from ._messages import CommandView, Outcome

FRAMES_MIGRATIONS = (
    """
    CREATE TABLE frame_twins (
        frame_id TEXT PRIMARY KEY,
        desired_version INTEGER NOT NULL DEFAULT 0,
        sync_digest TEXT NOT NULL DEFAULT '',
        reported_version INTEGER NOT NULL DEFAULT 0,
        online INTEGER NOT NULL DEFAULT 0,
        last_seen TEXT,
        firmware_version TEXT,
        current_file_id TEXT,
        free_bytes INTEGER,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE frame_commands (
        command_id TEXT PRIMARY KEY,
        frame_id TEXT NOT NULL,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        deadline REAL NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX frame_commands_frame ON frame_commands (frame_id, created_at);
    """,
)
"""The ``frames`` schema, migrated once by the fleet before any proxy starts."""

MAX_KEPT_COMMANDS = 200
"""Finished commands kept per frame (older ones are deleted)."""


class SavedTwin(msgspec.Struct, frozen=True, kw_only=True):
    """A ``frame_twins`` row without its key and ``updated_at``: what a proxy keeps of its
    twin across restarts."""

    desired_version: int
    sync_digest: str
    reported_version: int
    online: bool
    last_seen: str | None
    firmware_version: str | None
    current_file_id: str | None
    free_bytes: int | None


TWINS = Rows(SavedTwin)
COMMANDS = Rows(CommandView)
"""A ``frame_commands`` row is a ``CommandView``, then its ``deadline``."""

SELECT_TWIN = f"SELECT {TWINS.columns} FROM frame_twins WHERE frame_id = ?"
_UPSERT_TWIN = (
    "INSERT INTO frame_twins (frame_id, desired_version, sync_digest, reported_version, "
    "online, last_seen, firmware_version, current_file_id, free_bytes, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (frame_id) DO UPDATE SET "
    "desired_version = excluded.desired_version, sync_digest = excluded.sync_digest, "
    "reported_version = excluded.reported_version, online = excluded.online, "
    "last_seen = excluded.last_seen, firmware_version = excluded.firmware_version, "
    "current_file_id = excluded.current_file_id, free_bytes = excluded.free_bytes, "
    "updated_at = excluded.updated_at"
)
WRITE_SIGHTING = (
    "UPDATE frame_twins SET last_seen = ?, free_bytes = ?, updated_at = ? "
    "WHERE frame_id = ? AND (last_seen IS NULL OR last_seen < ?)"
)
"""A sighting (bind ``last_seen, free_bytes, updated_at, frame_id, last_seen``) never moves
``last_seen`` back."""

SELECT_PENDING_COMMANDS = (
    f"SELECT {COMMANDS.columns}, deadline FROM frame_commands "
    "WHERE frame_id = ? AND state = 'pending'"
)
SELECT_COMMAND = (
    f"SELECT {COMMANDS.columns} FROM frame_commands WHERE command_id = ? AND frame_id = ?"
)
_INSERT_COMMAND = (
    f"INSERT INTO frame_commands ({COMMANDS.columns}, deadline) VALUES ({COMMANDS.placeholders}, ?)"
)
_FINISH_COMMAND = (
    "UPDATE frame_commands SET state = ?, error = ?, finished_at = ? WHERE command_id = ?"
)
_FORGET_OLD_COMMANDS = (
    "DELETE FROM frame_commands WHERE frame_id = ? AND state != 'pending' AND "
    "command_id NOT IN (SELECT command_id FROM frame_commands WHERE frame_id = ? "
    "ORDER BY created_at DESC LIMIT ?)"
)


def write_twin(tx: Transaction, frame_id: str, twin: SavedTwin) -> None:
    tx.execute(_UPSERT_TWIN, (frame_id, *TWINS.values(twin), utc_now()))


def insert_command(tx: Transaction, view: CommandView, deadline: float) -> None:
    tx.execute(_INSERT_COMMAND, (*COMMANDS.values(view), deadline))


def finish_command(
    tx: Transaction,
    frame_id: str,
    command_id: str,
    outcome: Outcome,
    error: str,
    finished_at: str,
) -> None:
    """Record the outcome of ``command_id`` and forget the frame's oldest finished commands
    past ``MAX_KEPT_COMMANDS``."""
    tx.execute(_FINISH_COMMAND, (outcome, error, finished_at, command_id))
    tx.execute(_FORGET_OLD_COMMANDS, (frame_id, frame_id, MAX_KEPT_COMMANDS))
