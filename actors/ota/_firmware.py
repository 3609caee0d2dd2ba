"""The firmware catalogue: the images admins uploaded, each a blob in the firmware store
(named by its SHA-256) and a row of ``firmware``; a model has each version once.

``store`` commits the row and ``firmware.uploaded`` together; the catalogue in memory changes
only once that commit succeeded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from actors.blobs import BlobStore
from actors.devices import MAX_TEXT_LENGTH
from actors.errors import Conflict, Invalid, NotFound, TooLarge
from actors.events import Audit, FirmwareUploaded, new_id, utc_now
from actors.store import SortedRecords, Store, StoreError, Transaction
from actors.text import check_text
from config import OtaSettings

from ._checks import MAX_FILE_NAME_LENGTH, MAX_NOTES_LENGTH, check_version
from ._messages import Firmware, FirmwareFile, FirmwarePage, FirmwareStaging, StoreFirmware
from ._tables import FIRMWARE, INSERT_FIRMWARE

log = logging.getLogger("framehub.ota")

STAGING_TTL_S = 3600.0
"""Staged firmware uploads older than this, left by a crash, are removed at start."""


class FirmwareCatalogue:
    """Every firmware image the hub keeps, by id."""

    def __init__(self, store: Store, blobs: BlobStore, settings: OtaSettings) -> None:
        self._store = store
        self._blobs = blobs
        self._settings = settings
        self._firmware: SortedRecords[Firmware, tuple[str, str]] = SortedRecords(
            lambda f: (f.uploaded_at, f.firmware_id), tuple[str, str], newest_first=True
        )

    def restore(self, firmware: list[Firmware]) -> None:
        """Start again from what the tables hold."""
        self._firmware.clear()
        self._firmware.update((f.firmware_id, f) for f in firmware)

    async def sweep_staging(self) -> None:
        """Remove the staged uploads a crash left behind."""
        swept = await self._blobs.sweep_staging(STAGING_TTL_S)
        if swept:
            log.info("removed %d stale staged firmware uploads", swept)

    def find(self, firmware_id: str) -> Firmware | None:
        return self._firmware.get(firmware_id)

    def get(self, firmware_id: str) -> Firmware:
        """The firmware ``firmware_id``, or ``NotFound``."""
        firmware = self._firmware.get(firmware_id)
        if firmware is None:
            raise NotFound(f"no firmware {firmware_id}")
        return firmware

    def page(self, limit: int, cursor: str | None) -> FirmwarePage:
        """Newest first."""
        images, next_cursor = self._firmware.page(limit, cursor)
        return FirmwarePage(items=images, next_cursor=next_cursor)

    def open(self, firmware_id: str) -> FirmwareFile:
        """Where the image of ``firmware_id`` is, for a download."""
        firmware = self.get(firmware_id)
        return FirmwareFile(
            path=str(self._blobs.path(firmware.sha256)),
            sha256=firmware.sha256,
            size=firmware.size,
            file_name=firmware.file_name,
        )

    def staging(self) -> FirmwareStaging:
        return FirmwareStaging(
            directory=str(self._blobs.staging),
            max_bytes=self._settings.max_firmware_bytes,
        )

    async def store(self, message: StoreFirmware) -> Firmware:
        """Keep a staged image (see ``StoreFirmware`` for the errors)."""
        version = check_version(message.version)
        model = check_text(message.model, "model", MAX_TEXT_LENGTH)
        min_hw_version = check_text(message.min_hw_version, "min_hw_version", MAX_TEXT_LENGTH)
        notes = check_text(
            message.notes, "notes", MAX_NOTES_LENGTH, empty=True, forbidden=frozenset()
        )
        limit = self._settings.max_firmware_bytes
        if message.size > limit:
            raise TooLarge(f"the firmware image is larger than the limit of {limit} bytes")
        if message.size <= 0:
            raise Invalid("the firmware image is empty")
        for known in self._firmware.values():
            if (known.model, known.version) == (model, version):
                raise Conflict(
                    f"model {model} already has firmware {version} ({known.firmware_id})"
                )
        staged = Path(message.staged_path)
        if not await trio.to_thread.run_sync(self._is_staged, staged):
            raise Invalid("the upload is not a staged firmware file")
        sha256 = await self._blobs.put_file(staged)
        firmware = Firmware(
            firmware_id=new_id(),
            version=version,
            model=model,
            min_hw_version=min_hw_version,
            notes=notes,
            sha256=sha256,
            size=await self._blobs.size(sha256),
            file_name=(message.file_name or f"{model}-{version}.bin")[-MAX_FILE_NAME_LENGTH:],
            uploaded_at=utc_now(),
            uploaded_by=message.user_id,
        )
        tx = Transaction()
        tx.execute(INSERT_FIRMWARE, FIRMWARE.values(firmware))
        tx.publish(
            FirmwareUploaded(
                audit=Audit.user_or_system(message.user_id, "ota"),
                correlation_id=message.correlation_id or new_id(),
                firmware_id=firmware.firmware_id,
                version=version,
                model=model,
                min_hw_version=min_hw_version,
                sha256=sha256,
                size=firmware.size,
                notes=notes,
            )
        )
        try:
            await self._store.commit(tx)
        except StoreError:
            # Not kept (a full disk answers 507): neither is its image, unless another
            # firmware has the same bytes.
            if all(known.sha256 != sha256 for known in self._firmware.values()):
                await self._blobs.delete(sha256)
            raise
        self._firmware[firmware.firmware_id] = firmware
        log.info("firmware %s %s stored (%d bytes)", model, version, firmware.size)
        return firmware

    def _is_staged(self, path: Path) -> bool:
        """Only a file right in the staging directory may be moved on a caller's say-so."""
        return (
            path.parent.resolve() == self._blobs.staging.resolve()
            and not path.is_symlink()
            and path.is_file()
        )
