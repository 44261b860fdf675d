"""The `relay` command (README: "Command line").

Exit codes: 0 ok, 1 invalid config or input, 2 usage.

Every foreseeable failure ends in one clear line (or one line per config error) on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relay import __version__, logs
from relay.config.load import load_config
from relay.config.model import Config
from relay.errors import CLIError, ConfigError, InvalidEvent, StoreUnavailable, UsageError
from relay.events import parse_event
from relay.redact import Redactor
from relay.routing import decide

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def default_config() -> str:
    return os.environ.get("RELAY_CONFIG") or "relay.yaml"


def _load(args: argparse.Namespace) -> Config:
    """The config named by -c; its secrets are masked in everything this command prints."""
    config = load_config(args.config)
    args.redactor.register(*config.secrets())
    return config


def _read_input(file: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        raise CLIError(f"{file}: cannot read: {error.strerror or error}") from None


def _read_event(file: str) -> dict[str, Any]:
    try:
        return parse_event(_read_input(file))
    except InvalidEvent as error:
        raise CLIError(f"{file}: {error}") from None


# --- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from relay.demo import curl_command
    from relay.ingest.workers import WorkerOptions
    from relay.service import serve

    logs.setup(args.redactor, args.log_level, args.log_format)
    config = _load(args)
    banner = _banner(config, args.config)
    if args.uvloop:
        import uvloop

        uvloop.install()
    banner += _curl_hint(curl_command(config))
    workers = WorkerOptions(args.log_level, args.log_format, uvloop=args.uvloop)
    return asyncio.run(
        serve(
            config,
            Path(args.config),
            banner,
            watch_file=args.watch,
            redactor=args.redactor,
            worker_options=workers,
        )
    )


def _banner(config: Config, file: str) -> str:
    server = config.server
    workers = f", {server.workers} ingest workers" if server.workers else ""
    lines = [
        f"oneroute-relay {__version__}: POST http://{server.host}:{server.port}{server.path}"
        f" (config {file}, storage {_safe_storage(config.storage)}{workers})"
    ]
    admin = config.admin
    host = f"[{admin.host}]" if ":" in admin.host else admin.host
    lines.append(
        f"  operator console: http://{host}:{admin.port}/"
        + (" (token required)" if admin.token is not None else "")
    )
    for name, destination in config.destinations.items():
        state = "on" if destination.enabled else "off (enabled is false or empty)"
        lines.append(f"  destination {name} ({destination.type}): {state}")
    return "\n".join(lines)


def _curl_hint(curl: str | None) -> str:
    if curl is None:
        return "\nSign a test body with: relay sign -c FILE EVENT.json"
    return (
        "\n\nTry it: this posts a signed sample event (the example secret is in use; set "
        f"ONEROUTE_SECRET for real traffic):\n\n  {curl}\n"
    )


def _safe_storage(url: str) -> str:
    # The same reading of the password as Config.secrets(), however the URL is written.
    from relay.config.storage import safe_storage_url

    return safe_storage_url(url)


def cmd_check(args: argparse.Namespace) -> int:
    from relay.routing import regexes

    config = _load(args)
    enabled = sum(1 for d in config.destinations.values() if d.enabled)
    count = sum(
        1 for route in config.routes for matcher in route.when.values() for _ in regexes(matcher)
    )
    print(
        f"{args.config}: OK ({len(config.destinations)} destinations, {enabled} enabled; "
        f"{len(config.routes)} routes, {count} {'regex' if count == 1 else 'regexes'})\n"
        'regexes match in linear time (RE2; the syntax is in README.md, "Routing")'
    )
    return EXIT_OK


def cmd_route(args: argparse.Namespace) -> int:
    config = _load(args)
    events = [_read_event(file) for file in args.events]
    decisions = [decide(config.routes, event) for event in events]
    if args.render:
        from relay.destinations import preview
        from relay.integrations.base import BuildContext

        context = BuildContext(Path(args.config).parent, config.delivery.timeout, args.redactor)
        rendered = {}
        for name, destination in config.destinations.items():
            # The events routed here, as the lane would send them if all were due at once.
            routed = [e for e, d in zip(events, decisions, strict=True) if name in d.destinations]
            if routed and destination.enabled:
                rendered[name] = preview(name, destination, routed, context)
        print(args.redactor(json.dumps(rendered, indent=2, ensure_ascii=False)))
        return EXIT_OK
    for file, decision in zip(args.events, decisions, strict=True):
        if len(events) > 1:
            print(f"{file}:")
        print(f"routes: {', '.join(decision.routes) or '(none matched)'}")
        if not decision.destinations:
            print("destinations: (none: the event is stored and not delivered)")
        for name in decision.destinations:
            destination = config.destinations[name]
            state = "" if destination.enabled else " (off: not delivered)"
            print(f"  -> {name} ({destination.type}){state}")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from relay.ingest.signature import sign

    config = _load(args)
    body = _read_input(args.event)
    print(sign(config.oneroute.secrets[0].get_secret_value(), body))
    return EXIT_OK


def cmd_dead_list(args: argparse.Namespace) -> int:
    letters = _with_store(args, lambda store: store.dead_letters(limit=args.limit))
    if not letters:
        print("no dead deliveries")
        return EXIT_OK
    print(f"{'ID':>6}  {'DESTINATION':<20} {'REASON':<20} {'DIED (UTC)':<20} {'EVENT':<8} DETAIL")
    for letter in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.died_at))
        print(
            f"{letter.id:>6}  {letter.destination:<20} {letter.reason:<20} {when:<20} "
            f"{letter.event_id:<8} {args.redactor(letter.detail)}"
        )
    return EXIT_OK


def cmd_dead_retry(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        raise UsageError("dead retry needs delivery IDs (see relay dead list) or --all")
    ids = None if args.all else args.ids
    count = _with_store(args, lambda store: store.revive(ids, time.time()))
    print(
        f"{count} dead deliveries put back in line"
        + (
            ""
            if ids is None or count == len(ids)
            else f" ({len(ids) - count} of the ids given are not dead deliveries)"
        )
    )
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from relay.doctor import diagnose, exit_code, format_diagnoses

    config = _load(args)
    diagnoses = asyncio.run(
        diagnose(config, send_test=args.send_test, timeout=config.delivery.timeout)
    )
    print(args.redactor(format_diagnoses(diagnoses)))
    return exit_code(diagnoses)


def cmd_telegram_chats(args: argparse.Namespace) -> int:
    from relay.integrations.telegram.chats import exit_code, find_chats, format_chats

    config = _load(args)
    results = asyncio.run(find_chats(config, timeout=config.delivery.timeout))
    print(args.redactor(format_chats(results)))
    return exit_code(results)


def _with_store(args: argparse.Namespace, action: Callable[[Any], Any]) -> Any:
    from relay.store import store_for

    config = _load(args)

    async def run() -> Any:
        store = store_for(config.storage)
        try:
            await store.open()
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnavailable as error:
        raise CLIError(f"storage {_safe_storage(config.storage)}: {error}") from None


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay",
        description="Relay OneRoute webhook events into Slack and Telegram.",
    )
    parser.add_argument("--version", action="version", version=f"oneroute-relay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help: str, handler: Callable[[argparse.Namespace], int], parent: Any = commands
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=help)
        sub.add_argument(
            "-c",
            "--config",
            default=default_config(),
            metavar="FILE",
            help="config file (default: $RELAY_CONFIG, then ./relay.yaml)",
        )
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    serve = command("serve", "run the server and the delivery workers", cmd_serve)
    serve.add_argument("--log-format", choices=["text", "json"], default="text")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    serve.add_argument("--uvloop", action="store_true", help="run on uvloop (if installed)")
    serve.add_argument(
        "--watch",
        action="store_true",
        help="also reload when the config file changes (checked every 2 s), as on SIGHUP",
    )
    command("check", "validate the config; exit 0, or 1 with every error", cmd_check)
    route = command("route", "which routes and destinations an event takes", cmd_route)
    route.add_argument(
        "events",
        nargs="+",
        metavar="EVENT.json",
        help="OneRoute event bodies (- for stdin); with several and --render, each destination "
        "shows them coalesced, as if all were due at once",
    )
    route.add_argument("--render", action="store_true", help="print the exact API payloads")
    sign = command("sign", "print the x-oneroute-signature for a body (for curl)", cmd_sign)
    sign.add_argument("event", metavar="EVENT.json", help="the exact body to sign (- for stdin)")

    doctor = command(
        "doctor",
        "check every destination for real; exit 1 naming each one that is broken",
        cmd_doctor,
    )
    doctor.add_argument(
        "--send-test", action="store_true", help="also post a short test message to each"
    )
    command(
        "telegram-chats",
        "the chats each Telegram bot has recently seen, with their ids (for chat_id)",
        cmd_telegram_chats,
    )

    dead = commands.add_parser(
        "dead", help="deliveries that gave up", description="deliveries that gave up"
    )
    dead_commands = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    dead_list = command(
        "list",
        "deliveries that gave up: id, destination, reason, when",
        cmd_dead_list,
        dead_commands,
    )
    dead_list.add_argument("--limit", type=int, default=1000)
    retry = command("retry", "put dead deliveries back in line", cmd_dead_retry, dead_commands)
    retry.add_argument("ids", nargs="*", type=int, metavar="ID")
    retry.add_argument("--all", action="store_true", help="every dead delivery")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # python-telegram-bot warns on stderr about a change in its next major version whenever
    # Telegram rate-limits a call; the relay handles both forms, and users cannot act on it.
    warnings.filterwarnings("ignore", message=".*retry_after.*", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with usage on misuse
    args.redactor = Redactor()
    try:
        return args.handler(args)
    except UsageError as error:
        args.parser.print_usage(sys.stderr)
        print(f"relay: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
    except CLIError as error:
        print(args.redactor(str(error)), file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
