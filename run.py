"""framehub's command line: ``python run.py serve | bench NAME [--json] | ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import trio

from config import Settings, SettingsError, load_settings
from supervision import SystemFailure

if TYPE_CHECKING:
    from frame_device import OtaFault

BENCHMARKS = ("actors", "e2e", "fleet", "images", "journal", "telemetry", "ota", "soak")
TIMED_BENCHMARKS = ("soak",)
"""Benchmarks that run for ``--minutes``; the others have a fixed size."""


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
    from actors.mqtt import BrokerUnavailable
    from actors.store import StoreError

    settings = _settings()
    _configure_logging(settings.log_level)
    try:
        trio.run(serve, settings)
    except SystemFailure as failure:
        logging.getLogger("framehub").critical("framehub stopped: %s", failure)
        return 1
    except (StoreError, BrokerUnavailable) as error:
        logging.getLogger("framehub").critical("framehub cannot start: %s", error)
        return 1
    return 0


def cmd_deadletters(args: argparse.Namespace) -> int:
    """List parked events, or ask for one to be handed to its subscriber again."""
    import msgspec

    from actors import DATABASE_NAME
    from actors.journal import Journal, UnknownDeadLetter
    from actors.store import Store, StoreError
    from supervision import open_asyncio_bridge

    settings = _settings()
    database = settings.data_path / DATABASE_NAME
    if not database.exists():
        print(f"framehub: no database at {database}", file=sys.stderr)
        return 1

    async def run() -> int:
        async with open_asyncio_bridge() as bridge, Store.open(database, bridge) as store:
            journal = Journal(store)
            if args.action == "list":
                letters = await journal.dead_letters(args.subscriber)
                if args.json:
                    print(msgspec.json.encode(letters).decode())
                for letter in [] if args.json else letters:
                    flag = " (replay requested)" if letter.replay_requested else ""
                    print(
                        f"{letter.id}\t{letter.subscriber}\t#{letter.seq} {letter.event}\t"
                        f"{letter.attempts} attempts\t{letter.parked_at}\t{letter.error}{flag}"
                    )
                return 0
            try:
                letter = await journal.request_replay(args.id)
            except UnknownDeadLetter as error:
                print(f"framehub: {error}", file=sys.stderr)
                return 1
            print(
                f"replay of dead letter {letter.id} ({letter.event} for {letter.subscriber}) "
                "requested; a running hub picks it up within seconds, a stopped one at start"
            )
            return 0

    try:
        return trio.run(run)
    except StoreError as error:
        print(f"framehub: {error}", file=sys.stderr)
        return 1


def cmd_users(args: argparse.Namespace) -> int:
    """Create a user in the data directory's database, whether or not a hub is running."""
    from actors import DATABASE_NAME
    from actors.accounts import create_user, migrate_accounts
    from actors.errors import Conflict, Invalid
    from actors.store import Store, StoreError
    from supervision import open_asyncio_bridge

    settings = _settings()
    database = settings.data_path / DATABASE_NAME

    async def run() -> int:
        async with open_asyncio_bridge() as bridge, Store.open(database, bridge) as store:
            await migrate_accounts(store)
            try:
                user = await create_user(store, args.name, admin=args.admin)
            except (Conflict, Invalid) as error:
                print(f"framehub: {error}", file=sys.stderr)
                return 1
        role = "admin user" if user.admin else "user"
        print(f"created {role} {user.name!r} (id {user.user_id}); its API token, shown only once:")
        print(user.token)
        return 0

    try:
        return trio.run(run)
    except StoreError as error:
        print(f"framehub: {error}", file=sys.stderr)
        return 1


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    if args.minutes is not None and args.name not in TIMED_BENCHMARKS:
        print(
            f"framehub: --minutes is for {', '.join(TIMED_BENCHMARKS)} only;"
            f" bench {args.name} has a fixed size",
            file=sys.stderr,
        )
        return 2
    if args.minutes is not None and args.minutes <= 0:
        print("framehub: --minutes must be positive", file=sys.stderr)
        return 2
    benchmark = importlib.import_module(f"bench.{args.name}")
    if args.minutes is not None:
        benchmark.main(json_output=args.json, minutes=args.minutes)
    else:
        benchmark.main(json_output=args.json)
    return 0


def _hub_url(settings: Settings) -> str | None:
    """The running hub's API address: its public URL, else the port it wrote to ports.json."""
    if settings.http.public_url:
        return settings.http.public_url.rstrip("/")
    import json

    try:
        ports = json.loads((settings.data_path / "ports.json").read_text())
    except (OSError, ValueError):
        return None
    port = ports.get("http") if isinstance(ports, dict) else None
    return settings.http.base_url(port) if isinstance(port, int) else None


def cmd_upload(args: argparse.Namespace) -> int:
    """Upload photos to a running hub over HTTP (what a phone app does)."""
    import os
    from pathlib import Path

    from actors import upload_photos

    hub = args.hub or _hub_url(_settings())
    if hub is None:
        print("framehub: no running hub found; give --hub URL", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("FRAMEHUB_TOKEN")
    if not token:
        print("framehub: give --token or set FRAMEHUB_TOKEN", file=sys.stderr)
        return 2
    paths = [Path(path) for path in args.paths]
    try:
        failed = upload_photos(hub, token, paths, album=args.album)
    except Exception as error:  # the hub is down, the token is refused, ...
        print(f"framehub: upload failed: {error}", file=sys.stderr)
        return 1
    print(f"{len(paths) - failed} of {len(paths)} uploaded", file=sys.stderr)
    return 1 if failed else 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the hub of this data directory answers ready, else 1 with the reason."""
    import httpx

    hub = args.hub or _hub_url(_settings())
    if hub is None:
        print("framehub: not running (no ports.json in the data directory)", file=sys.stderr)
        return 1
    try:
        response = httpx.get(f"{hub}/readyz", timeout=args.timeout)
    except httpx.HTTPError as error:
        print(f"framehub: no answer from {hub}: {error}", file=sys.stderr)
        return 1
    if response.status_code == 200:
        print(f"framehub at {hub} is ready")
        return 0
    try:
        reason = response.json().get("detail") or response.json().get("status")
    except ValueError:
        reason = response.text[:200]
    print(f"framehub at {hub} is not ready ({response.status_code}): {reason}", file=sys.stderr)
    return 1


def cmd_mqtt_acl(_: argparse.Namespace) -> int:
    """Print the password file and ACL an external broker needs for the hub and its frames."""
    from actors import DATABASE_NAME
    from actors._mqtt_acl import mqtt_acl
    from actors.store import StoreError

    settings = _settings()
    database = settings.data_path / DATABASE_NAME
    if not database.exists():
        print(f"framehub: no database at {database}", file=sys.stderr)
        return 1
    try:
        print(trio.run(mqtt_acl, settings, database), end="")
    except StoreError as error:
        print(f"framehub: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_contracts(args: argparse.Namespace) -> int:
    """Write the generated contracts under ``docs/`` (``--check``: only say if they are stale)."""
    from pathlib import Path

    import wire

    path = Path(__file__).resolve().parent / "docs" / "asyncapi.json"
    text = wire.asyncapi_json()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return 0
    if args.check:
        print(f"framehub: {path} is stale; run `python run.py contracts`", file=sys.stderr)
        return 1
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def cmd_frame(args: argparse.Namespace) -> int:
    """Run one frame (the ``frame_device`` program) until SIGINT/SIGTERM."""
    from pathlib import Path
    from urllib.parse import urlsplit

    from frame_device import FrameConfig, run_frame

    _configure_logging(args.log_level)
    config = FrameConfig(
        device_id=args.device_id,
        token=args.token,
        hub_url=args.hub,
        mqtt_host=args.mqtt_host or urlsplit(args.hub).hostname or "127.0.0.1",
        mqtt_port=args.mqtt_port,
        mqtt_client_id=args.client_id or f"frame-{args.device_id}",
        mqtt_username=args.mqtt_username,
        mqtt_password=args.mqtt_password,
        data_dir=Path(args.data_dir or f"frame-data/{args.device_id}"),
        panel_width=args.width,
        panel_height=args.height,
        heartbeat_s=args.heartbeat,
        render=args.render,
        ignore_commands=args.ignore_commands,
        public_key=args.public_key,
        health_check_s=args.health_check_s,
        ota_faults=tuple(args.ota_fault),
    )
    return run_frame(config, events=args.events)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Pair (or reuse) N frames with the hub and run them in one process."""
    import os
    from pathlib import Path

    from frame_device import PairingFailed, SimulatorConfig, run_simulator

    _configure_logging(args.log_level)
    token = args.token or os.environ.get("FRAMEHUB_TOKEN")
    if not token:
        print("framehub: give --token (an admin's) or set FRAMEHUB_TOKEN", file=sys.stderr)
        return 2
    faults: dict[int, tuple[OtaFault, ...]] = {}
    for index, fault in args.ota_fault:
        faults[index] = (*faults.get(index, ()), fault)
    config = SimulatorConfig(
        frames=args.frames,
        token=token,
        hub_url=args.hub,
        data_dir=Path(args.data_dir),
        model=args.model,
        hw_version=args.hw_version,
        width=args.width,
        height=args.height,
        orientation=args.orientation,
        heartbeat_s=args.heartbeat,
        render=args.render,
        ignore_commands=args.ignore_commands,
        health_check_s=args.health_check_s,
        ota_faults=faults,
        ota_faults_all=tuple(args.ota_fault_all),
    )
    try:
        return run_simulator(config, events=args.events)
    except PairingFailed as error:
        print(f"framehub: pairing failed: {error}", file=sys.stderr)
        return 1


def _ota_fault(text: str) -> OtaFault:
    """``KIND[:TIMES]`` (argparse type)."""
    from frame_device import OtaFault

    try:
        return OtaFault.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _indexed_ota_fault(text: str) -> tuple[int, OtaFault]:
    """``INDEX:KIND[:TIMES]`` (argparse type): a fault of the simulator's INDEX-th frame."""
    index, _, fault = text.partition(":")
    if not index.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected INDEX:KIND[:TIMES]")
    return int(index), _ota_fault(fault)


_OTA_FAULT_HELP = (
    "corrupt_download, failed_install, crash_after_boot or never_answers; "
    "TIMES: how many update attempts it spoils (default: all); repeatable"
)


def _frame_options(command: argparse.ArgumentParser) -> None:
    """Options a real frame and a simulated fleet share."""
    command.add_argument("--hub", default="http://127.0.0.1:8080", help="hub URL")
    command.add_argument("--width", type=int, default=1024, help="panel width until a sync")
    command.add_argument("--height", type=int, default=600, help="panel height until a sync")
    command.add_argument("--heartbeat", type=float, default=30.0, help="seconds until a sync")
    command.add_argument("--no-render", dest="render", action="store_false", help="no PNG")
    command.add_argument("--ignore-commands", action="store_true", help="never answer commands")
    command.add_argument(
        "--health-check-s",
        type=float,
        default=30.0,
        help="seconds a new firmware must run healthily before it is committed",
    )
    command.add_argument("--events", action="store_true", help="print JSON event lines")
    command.add_argument("--log-level", default="WARNING", help="stderr logging level")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="run.py", description="framehub: a hub for photo frames")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the hub until SIGINT/SIGTERM")
    serve.set_defaults(handler=cmd_serve)
    letters = commands.add_parser("deadletters", help="list or replay parked events")
    letter_actions = letters.add_subparsers(dest="action", required=True)
    listing = letter_actions.add_parser("list", help="list parked events")
    listing.add_argument("--subscriber", default=None)
    listing.add_argument("--json", action="store_true")
    replay = letter_actions.add_parser("replay", help="hand a parked event to its subscriber again")
    replay.add_argument("id", type=int)
    letters.set_defaults(handler=cmd_deadletters)
    upload = commands.add_parser("upload", help="upload photos to a running hub")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--album", help="album name (created if the caller has none by that name)")
    upload.add_argument("--hub", help="hub URL (default: this data directory's running hub)")
    upload.add_argument("--token", help="API token (default: $FRAMEHUB_TOKEN)")
    upload.set_defaults(handler=cmd_upload)
    health = commands.add_parser("health", help="exit 0 when the running hub is ready")
    health.add_argument("--hub", help="hub URL (default: this data directory's running hub)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for it")
    health.set_defaults(handler=cmd_health)
    acl = commands.add_parser(
        "mqtt-acl", help="print the password file and ACL an external MQTT broker needs"
    )
    acl.set_defaults(handler=cmd_mqtt_acl)
    contracts = commands.add_parser(
        "contracts", help="write the generated contracts (docs/asyncapi.json)"
    )
    contracts.add_argument("--check", action="store_true", help="exit 1 if they are stale")
    contracts.set_defaults(handler=cmd_contracts)
    users = commands.add_parser("users", help="manage users")
    user_actions = users.add_subparsers(dest="action", required=True)
    add_user = user_actions.add_parser("add", help="create a user and print its API token")
    add_user.add_argument("name")
    add_user.add_argument("--admin", action="store_true", help="the user may manage the hub")
    users.set_defaults(handler=cmd_users)
    frame = commands.add_parser("frame", help="run one frame (the frame_device program)")
    frame.add_argument("--device-id", required=True)
    frame.add_argument("--token", required=True, help="the frame's HTTP token")
    frame.add_argument("--mqtt-username", required=True)
    frame.add_argument("--mqtt-password", required=True)
    frame.add_argument("--mqtt-host", help="default: the hub URL's host")
    frame.add_argument("--mqtt-port", type=int, default=1884)
    frame.add_argument("--client-id", help="default: frame-<device id>")
    frame.add_argument("--data-dir", help="default: frame-data/<device id>")
    frame.add_argument(
        "--public-key", default="", help="the hub's signing key (base64), from the pairing"
    )
    frame.add_argument(
        "--ota-fault",
        type=_ota_fault,
        action="append",
        default=[],
        metavar="KIND[:TIMES]",
        help=f"spoil firmware updates: {_OTA_FAULT_HELP}",
    )
    _frame_options(frame)
    frame.set_defaults(handler=cmd_frame)
    simulate = commands.add_parser("simulate", help="run N virtual frames against a hub")
    simulate.add_argument("--frames", type=int, required=True)
    simulate.add_argument("--token", help="an admin's API token (default: $FRAMEHUB_TOKEN)")
    simulate.add_argument("--data-dir", default="sim-data")
    simulate.add_argument("--model", default="sim-frame")
    simulate.add_argument("--hw-version", default="1.0")
    simulate.add_argument("--orientation", choices=("landscape", "portrait"), default="landscape")
    simulate.add_argument(
        "--ota-fault",
        type=_indexed_ota_fault,
        action="append",
        default=[],
        metavar="INDEX:KIND[:TIMES]",
        help=f"spoil the updates of frame INDEX (0-based, pairing order): {_OTA_FAULT_HELP}",
    )
    simulate.add_argument(
        "--ota-fault-all",
        type=_ota_fault,
        action="append",
        default=[],
        metavar="KIND[:TIMES]",
        help=f"spoil the updates of every frame: {_OTA_FAULT_HELP}",
    )
    _frame_options(simulate)
    simulate.set_defaults(handler=cmd_simulate)
    bench = commands.add_parser("bench", help="run a benchmark and print figures and ratios")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    bench.add_argument(
        "--minutes",
        type=float,
        metavar="M",
        help=f"for {', '.join(TIMED_BENCHMARKS)} only (refused for the others): minutes measured"
        " after the warm-up (soak: default 10)",
    )
    bench.set_defaults(handler=cmd_bench)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
