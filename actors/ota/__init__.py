"""OTA (seed ota_service): firmware images and update campaigns, ``/domain/ota``."""

from ._ota import OTA_PATH, OtaCampaigns
from ._signing import SIGNING_KEY_FILE, SigningKey, SigningKeyError, load_signing_key

__all__ = [
    "OTA_PATH",
    "SIGNING_KEY_FILE",
    "OtaCampaigns",
    "SigningKey",
    "SigningKeyError",
    "load_signing_key",
]
