"""framehub's domain actors and the hub that assembles them into one supervision tree."""

from ._hub import DATABASE_NAME, hub_tree, serve, write_ports

__all__ = ["DATABASE_NAME", "hub_tree", "serve", "write_ports"]
