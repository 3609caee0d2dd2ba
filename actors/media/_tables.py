"""The media cache's tables and the statements that read and write them.

``photo_metadata`` (one row per image upload), ``photo_versions`` (the sized versions made of
it, each a blob), ``photo_cache`` (the version each frame was last given), ``playlists`` with
their ordered ``playlist_items``, and ``rotation_schedules``.
"""

from __future__ import annotations

from actors.store import Rows

from ._messages import Schedule

MEDIA_MIGRATIONS = (
    """
    CREATE TABLE photo_metadata (
        file_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        file_name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        ai_metadata BLOB,
        created_at TEXT NOT NULL
    );
    CREATE TABLE photo_versions (
        file_id TEXT NOT NULL,
        size TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (file_id, size)
    );
    CREATE TABLE photo_cache (
        file_id TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        size TEXT NOT NULL,
        cached_at TEXT NOT NULL,
        PRIMARY KEY (file_id, frame_id)
    );
    CREATE INDEX photo_cache_frame ON photo_cache (frame_id);
    CREATE TABLE playlists (
        playlist_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE playlist_items (
        playlist_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (playlist_id, file_id)
    );
    CREATE INDEX playlist_items_file ON playlist_items (file_id);
    CREATE TABLE rotation_schedules (
        schedule_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        playlist_id TEXT,
        interval_s INTEGER NOT NULL,
        shuffle INTEGER NOT NULL,
        quiet_start TEXT,
        quiet_end TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX rotation_schedules_frame ON rotation_schedules (frame_id);
    """,
)
"""The ``media`` schema (seed table names). ``photo_metadata.sha256`` names the original blob;
``ai_metadata`` is the analysis as JSON, NULL until ``file.uploaded.with_ai`` arrives."""

# -- photos, versions and frames' caches --------------------------------------------------------

SELECT_PHOTOS = (
    "SELECT file_id, owner_id, file_name, content_type, sha256, created_at, ai_metadata "
    "FROM photo_metadata"
)
SELECT_VERSIONS = "SELECT file_id, size, width, height, sha256 FROM photo_versions"
SELECT_CACHE = "SELECT file_id, frame_id, size FROM photo_cache"
SELECT_ANALYSIS = "SELECT ai_metadata FROM photo_metadata WHERE file_id = ?"


def select_analyses(count: int) -> str:
    """The analyses (file id, JSON) of ``count`` photos, for those that have one."""
    marks = ", ".join("?" * count)
    return (
        f"SELECT file_id, ai_metadata FROM photo_metadata WHERE file_id IN ({marks}) "
        "AND ai_metadata IS NOT NULL"
    )


INSERT_UPLOADED_PHOTO = (
    "INSERT INTO photo_metadata (file_id, owner_id, file_name, content_type, sha256, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (file_id) DO NOTHING"
)
INSERT_ANALYSED_PHOTO = (
    "INSERT INTO photo_metadata (file_id, owner_id, file_name, content_type, sha256, "
    "ai_metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_ANALYSIS = "UPDATE photo_metadata SET ai_metadata = ? WHERE file_id = ?"
INSERT_VERSION = (
    "INSERT INTO photo_versions (file_id, size, width, height, sha256) VALUES (?, ?, ?, ?, ?)"
)
UPSERT_CACHE = (
    "INSERT INTO photo_cache (file_id, frame_id, size, cached_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (file_id, frame_id) DO UPDATE SET "
    "size = excluded.size, cached_at = excluded.cached_at"
)
DELETE_PHOTO = tuple(
    f"DELETE FROM {table} WHERE file_id = ?"
    for table in ("photo_versions", "photo_cache", "playlist_items", "photo_metadata")
)
"""A deleted photo's rows, table by table (its playlists stay)."""
DELETE_FRAME_SCHEDULES = "DELETE FROM rotation_schedules WHERE frame_id = ?"
DELETE_FRAME_CACHE = "DELETE FROM photo_cache WHERE frame_id = ?"

# -- playlists and schedules -------------------------------------------------------------------

SELECT_PLAYLISTS = "SELECT playlist_id, owner_id, name, created_at FROM playlists"
SELECT_PLAYLIST_ITEMS = (
    "SELECT playlist_id, file_id FROM playlist_items ORDER BY playlist_id, position"
)
INSERT_PLAYLIST = (
    "INSERT INTO playlists (playlist_id, owner_id, name, created_at) VALUES (?, ?, ?, ?)"
)
RENAME_PLAYLIST = "UPDATE playlists SET name = ? WHERE playlist_id = ?"
INSERT_PLAYLIST_ITEM = (
    "INSERT INTO playlist_items (playlist_id, file_id, position) VALUES (?, ?, ?)"
)
DELETE_PLAYLIST_ITEMS = "DELETE FROM playlist_items WHERE playlist_id = ?"
DELETE_PLAYLIST = "DELETE FROM playlists WHERE playlist_id = ?"
UNSET_SCHEDULES_PLAYLIST = "UPDATE rotation_schedules SET playlist_id = NULL WHERE playlist_id = ?"
SCHEDULES = Rows(Schedule)
SELECT_SCHEDULES = f"SELECT {SCHEDULES.columns} FROM rotation_schedules"
INSERT_SCHEDULE = SCHEDULES.insert("rotation_schedules")
DELETE_SCHEDULE = "DELETE FROM rotation_schedules WHERE schedule_id = ?"
