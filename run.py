"""framehub's command line: ``python run.py serve | bench NAME [--json] | ...``."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from config import Settings, SettingsError, load_settings
from supervision import SystemFailure

BENCHMARKS = ("actors",)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        print(f"framehub: invalid settings: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_serve(_: argparse.Namespace) -> int:
    from actors import serve

    settings = _settings()
    _configure_logging(settings.log_level)
    try:
        trio.run(serve, settings)
    except SystemFailure as failure:
        logging.getLogger("framehub").critical("framehub stopped: %s", failure)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name == "actors":
        from bench.actors import main as bench_main
    bench_main(json_output=args.json)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="run.py", description="framehub: a hub for photo frames")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the hub until SIGINT/SIGTERM")
    serve.set_defaults(handler=cmd_serve)
    bench = commands.add_parser("bench", help="run a benchmark and print figures and ratios")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    bench.set_defaults(handler=cmd_bench)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
