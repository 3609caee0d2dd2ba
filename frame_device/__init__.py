"""The frame side of framehub: the frame program and the fleet simulator (in progress)."""
