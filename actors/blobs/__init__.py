"""Content-addressed blob files (photos, versions, firmware) with atomic, durable writes."""

from ._store import BlobStore, FsyncHook, WriteHook, check_sha256

__all__ = ["BlobStore", "FsyncHook", "WriteHook", "check_sha256"]
