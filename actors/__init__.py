"""framehub's domain actors and the hub that assembles them into one supervision tree."""

from ._hub import DATABASE_NAME, HubBlobs, HubRefs, RunningHub, hub_tree, serve, write_ports
from ._upload_cli import upload as upload_photos

__all__ = [
    "DATABASE_NAME",
    "HubBlobs",
    "HubRefs",
    "RunningHub",
    "hub_tree",
    "serve",
    "upload_photos",
    "write_ports",
]
