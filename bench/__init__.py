"""Benchmarks of framehub's runtime, run as ``python run.py bench <name> [--json]``.

Each benchmark module exposes ``main(json_output: bool) -> dict[str, float | int]``: it prints a
readable table and, with ``json_output``, one JSON object with every figure as its last line.
"""
