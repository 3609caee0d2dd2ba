"""The uploader (seed storage_service): photos in, their records, ``file.*`` events out."""

from ._names import (
    MAX_FILE_NAME,
    MAX_METADATA_CHARS,
    MAX_METADATA_KEYS,
    check_metadata,
    clean_file_name,
)
from ._uploader import (
    ANALYSIS_CONSUMER,
    MIGRATIONS,
    DeletePhoto,
    FilePage,
    FileRecord,
    GetFile,
    ListFiles,
    OpenOriginal,
    OriginalBlob,
    StoredPhoto,
    StorePhoto,
    Uploader,
    UploaderMessage,
    storage_path,
)

__all__ = [
    "ANALYSIS_CONSUMER",
    "MAX_FILE_NAME",
    "MAX_METADATA_CHARS",
    "MAX_METADATA_KEYS",
    "MIGRATIONS",
    "DeletePhoto",
    "FilePage",
    "FileRecord",
    "GetFile",
    "ListFiles",
    "OpenOriginal",
    "OriginalBlob",
    "StorePhoto",
    "StoredPhoto",
    "Uploader",
    "UploaderMessage",
    "check_metadata",
    "clean_file_name",
    "storage_path",
]
