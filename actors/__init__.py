"""framehub's domain actors and the hub that assembles them into one supervision tree."""

from ._hub import hub_tree, serve, write_ports

__all__ = ["hub_tree", "serve", "write_ports"]
