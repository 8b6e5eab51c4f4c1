"""The ``whatsup`` command (also ``python -m streams``): one entry point for every role of the pipeline."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from base.exceptions import SettingsError, StackError, exit_status
from base.settings import PROJECT_ROOT, WORKER_ROLES, get_settings


def _worker(args: argparse.Namespace) -> int:
    if args.role is not None:
        os.environ["WHATSUP_WORKER_ROLE"] = args.role  # read with every other setting, by the app module
    settings = get_settings()
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    # uvloop's event loop and socket I/O run in C: the worker's HTTP requests, Redis round trips and
    # Kafka fetches cost a good part less CPU. It must be chosen before Faust creates the loop.
    import mode.loop

    mode.loop.use("uvloop")
    from streams.app import app
    from streams.worker import Worker

    app.conf.Worker = Worker  # type: ignore[assignment]  # the setting is typed as a special form

    level = {"WARNING": "warn", "CRITICAL": "crit"}.get(settings.log_level, settings.log_level.lower())
    # JSON logs are for machines: the start-up banner (printed, not logged) would break the lines.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    sys.argv = [sys.argv[0], *quiet, "worker", "--loglevel", level]
    app.main()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from streams.ingest.server import run_ingest

    return run_ingest(get_settings())


def _loadtest(args: argparse.Namespace) -> int:
    import asyncio
    import time
    from pathlib import Path

    from base.apikeys import POST_EVENTS
    from loadtest.fleet import FleetConfig, plan
    from loadtest.run import render, run_load, summary, write_truth

    settings = get_settings()
    keys = [key for key, roles in settings.api_keys.items() if roles & POST_EVENTS]
    if settings.token_secret is None or not keys:
        raise SettingsError("WHATSUP_TOKEN_SECRET and an ingest key in WHATSUP_API_KEYS must be set")
    config = FleetConfig(
        drivers=args.drivers, minutes=args.minutes, fix_s=args.fix, upload_s=args.upload, seed=args.seed
    )
    url = (args.url or f"http://127.0.0.1:{settings.ingest_port}").rstrip("/")
    print(
        f"planning {config.drivers:,} drivers for {config.minutes:g} min ({config.pings_per_s:,.0f} fixes/s)"
    )
    uploads = plan(config)
    start_ms = int(time.time() * 1000) + 2_000
    requests = render(config, uploads, url, settings.token_secret, keys[0], start_ms)
    report = asyncio.run(run_load(requests, url, warmup_s=args.warmup))
    print("\n".join(summary(report)))
    out = Path(args.out) if args.out else settings.data_dir / "loadtest"
    print(f"ground truth: {write_truth(report, out)}")
    return 0


def _create_topics(args: argparse.Namespace) -> int:
    from base.kafka import create_topics

    created = create_topics(get_settings())
    print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ", all present"))
    return 0


def _driver_token(args: argparse.Namespace) -> int:
    from base.tokens import TokenError, issue_driver_token

    settings = get_settings()
    if settings.token_secret is None:
        raise SettingsError("WHATSUP_TOKEN_SECRET must be set to issue driver tokens")
    try:
        print(issue_driver_token(settings.token_secret, args.driver_id, int(args.ttl_hours * 3600)))
    except TokenError as exc:
        print(f"whatsup: {exc}", file=sys.stderr)
        return 65  # EX_DATAERR
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import asyncio
    import time
    from pathlib import Path

    from simulator.model import Faults, SimConfig, simulate
    from simulator.run import post_through_api, produce_to_kafka, write_truth

    settings = get_settings()
    config = SimConfig(
        drivers=args.drivers,
        minutes=args.minutes,
        interval_s=args.interval,
        end_ms=int(time.time() * 1000),
        seed=args.seed,
        faults=Faults.none() if args.no_faults else Faults(lost=args.lost),
        max_gap_ticks=args.max_gap,
        driver_prefix=args.prefix,
    )
    runs = simulate(config)
    out = Path(args.out) if args.out else settings.data_dir / "simulator"
    summary = write_truth(runs, out)
    if args.mode == "api":
        if settings.token_secret is None:
            raise SettingsError("WHATSUP_TOKEN_SECRET must be set to post through the ingest API")
        url = args.url or f"http://127.0.0.1:{settings.web_port}"
        report = asyncio.run(post_through_api(runs, url, settings.token_secret))
    else:
        report = produce_to_kafka(runs, settings)
    rate = report.pings / report.seconds if report.seconds else 0.0
    print(
        f"sent {report.pings} pings of {len(runs)} drivers in {report.requests} uploads "
        f"({report.seconds:.1f} s, {rate:,.0f} pings/s, {report.retried} retries) via {args.mode}"
    )
    print(f"expected verdicts: {json.dumps(summary['expected'], sort_keys=True)}")
    print(f"ground truth: {out / 'truth.jsonl'}, {out / 'summary.json'}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    import time

    from base import topics
    from connectors.whatsapp.phones import PhoneError
    from streams.erase import erase_redis, publish, request_record, resolve, wait_applied

    settings = get_settings()
    try:
        subject = asyncio.run(resolve(settings, args.driver, args.phone))
    except PhoneError as exc:
        print(f"whatsup erase: --phone: {exc}; nothing erased", file=sys.stderr)
        return 65  # EX_DATAERR
    record = request_record(subject, args.requested_by, args.reason, int(time.time() * 1000))
    who = f"driver {subject.driver_id}" if subject.driver_id else "a person who is no registered driver"
    print(f"erasing {who}; audit subject {subject.subject_hash}")
    print(f"  as customer: {len(subject.customers)} reference(s); phone numbers: {len(subject.phone_hashes)}")
    print(f"  Redis: {asyncio.run(erase_redis(settings, subject))} key(s) deleted")
    publish(settings, record)
    print(
        f"  request {record['erasure_id']} on {topics.PRIVACY_ERASURES}: the worker drops the driver's state,"
    )
    print("  the sink deletes the rows in ClickHouse and writes the audit row")
    if args.wait is None:
        return 0
    if not wait_applied(settings, record["erasure_id"], args.wait):
        print(f"whatsup erase: not applied in ClickHouse within {args.wait:g} s: is the sink running?")
        return 75  # EX_TEMPFAIL: the request stays on its topic and is applied when the sink is back
    print("  applied in ClickHouse; audit row written")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from streams.rotate import rotation_plan

    print(rotation_plan(get_settings()))
    return 0


def _registry_load(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from connectors.whatsapp.registry import RegistryError
    from connectors.whatsapp.registry_load import load_registry_file

    settings = get_settings()
    if settings.phone_hash_key is None:
        raise SettingsError("WHATSUP_PHONE_HASH_KEY must be set to load the registry")
    try:
        drivers, customers = asyncio.run(load_registry_file(settings, Path(args.file)))
    except (RegistryError, OSError) as exc:
        print(f"whatsup registry load: {exc}; nothing loaded", file=sys.stderr)
        return 65  # EX_DATAERR
    print(f"loaded {drivers} driver(s) and {customers} customer(s) from {args.file}")
    return 0


def _console(args: argparse.Namespace) -> int:
    from streams.console.server import run_console

    return run_console(get_settings())


def _dispatcher_add(args: argparse.Namespace) -> int:
    import getpass

    import redis.asyncio as aioredis

    from streams.console.accounts import Accounts, SignInError

    settings = get_settings()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("whatsup: the passwords differ", file=sys.stderr)
            return 65  # EX_DATAERR

    async def add() -> str:
        client = aioredis.from_url(settings.redis_url)
        try:
            idle, failures = settings.console_session_idle_s, settings.console_login_failures
            return (
                await Accounts(client, settings.topic_prefix, idle, failures).add(args.name, password)
            ).otpauth_url
        finally:
            await client.aclose()

    try:
        url = asyncio.run(add())
    except SignInError as exc:
        print(f"whatsup: {exc}", file=sys.stderr)
        return 65  # EX_DATAERR
    print(f"dispatcher {args.name} added; add this to an authenticator app (shown once):")
    print(url)
    return 0


def _delegate(tool: str, argv: list[str]) -> int:
    """Run a development tool of the checkout (``benches``, ``demos``) in a child process."""
    if not (PROJECT_ROOT / tool / "__main__.py").is_file():
        print(f"whatsup: {tool}/ is part of a checkout, not of the installed pipeline", file=sys.stderr)
        return 69  # EX_UNAVAILABLE
    return subprocess.call([sys.executable, "-m", tool, *argv], cwd=PROJECT_ROOT)


def _bench(args: argparse.Namespace) -> int:
    return _delegate(
        "benches", [*(["--quick"] if args.quick else []), *(["--only", *args.only] if args.only else [])]
    )


def _sender(args: argparse.Namespace) -> int:
    from connectors.whatsapp.service import run_sender

    return run_sender(get_settings())


def _sandbox(args: argparse.Namespace) -> int:
    from connectors.sandbox.run import run_sandboxes

    return run_sandboxes(get_settings())


def _settings(args: argparse.Namespace) -> int:
    print(json.dumps(get_settings().redacted(), indent=2, default=sorted))
    return 0


def _demo(args: argparse.Namespace) -> int:
    options = {"--drivers": args.drivers, "--minutes": args.minutes, "--timeout": args.timeout}
    return _delegate("demos", [str(part) for option in options.items() for part in option])


def _sink(args: argparse.Namespace) -> int:
    from sinks.process import run_sink

    return run_sink(get_settings())


def _query(args: argparse.Namespace) -> int:
    from sinks.query import QueryError, run_query

    try:
        rows = run_query(get_settings(), args.sql)
    except QueryError as exc:
        print(f"whatsup query: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if rows:
        print("\t".join(rows[0]))
        for row in rows:
            print("\t".join("NULL" if v is None else str(v) for v in row.values()))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=sys.stderr)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from sinks.engine import embedded_path, is_embedded, make_client
    from sinks.migrate import apply_migrations, apply_retention

    settings = get_settings()
    try:
        client = make_client(settings)
    except Exception as exc:
        if is_embedded(settings) and "lock" in str(exc).lower():
            raise StackError(
                f"the embedded database {embedded_path(settings)} is open in another process: the running "
                "`whatsup sink` owns it and applies migrations when it starts"
            ) from exc
        raise StackError(f"cannot open ClickHouse at {settings.clickhouse_url}: {exc}") from exc
    applied = apply_migrations(client)
    days = apply_retention(client, settings)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ", up to date"))
    print("retention (days): " + ", ".join(f"{table}={n}" for table, n in days.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Describe every sub-command."""
    parser = argparse.ArgumentParser(prog="whatsup", description="WhatsUp Logistics live pipeline")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = commands.add_parser("worker", help="run a Faust worker (agents, tables, HTTP API)")
    worker.add_argument(
        "--role",
        choices=WORKER_ROLES,
        help="run every agent (all, the default: WHATSUP_WORKER_ROLE), the clean stage alone, or the"
        " agents downstream of it; split roles consume as groups of their own",
    )
    worker.set_defaults(run=_worker)
    commands.add_parser(
        "ingest", help="serve the intake routes (pings, delivery events, webhooks) on WHATSUP_INGEST_PORT"
    ).set_defaults(run=_ingest)
    load = commands.add_parser("loadtest", help="send a delivery fleet's traffic to the intake, open loop")
    load.add_argument("--drivers", type=int, default=20_000)
    load.add_argument("--minutes", type=float, default=12.0, help="how long the fleet runs")
    load.add_argument("--warmup", type=float, default=120.0, help="seconds reported apart as the warm-up")
    load.add_argument("--fix", type=float, default=5.0, help="seconds between a phone's fixes")
    load.add_argument("--upload", type=float, default=15.0, help="seconds between a phone's uploads")
    load.add_argument("--seed", type=int, default=11)
    load.add_argument("--url", help="intake base URL (default: WHATSUP_INGEST_PORT on 127.0.0.1)")
    load.add_argument("--out", help="ground-truth directory (default: var/loadtest)")
    load.set_defaults(run=_loadtest)
    commands.add_parser("create-topics", help="create the pipeline's Kafka topics").set_defaults(
        run=_create_topics
    )
    commands.add_parser("settings", help="print the settings in force, secrets masked").set_defaults(
        run=_settings
    )
    commands.add_parser("sender", help="send whatsapp.outbound through Meta (Twilio fallback)").set_defaults(
        run=_sender
    )
    commands.add_parser("sandbox", help="local Meta Cloud API and Twilio stand-ins").set_defaults(
        run=_sandbox
    )
    token = commands.add_parser("driver-token", help="issue a driver token for POST /v1/pings")
    token.add_argument("driver_id")
    token.add_argument("--ttl-hours", type=float, default=24 * 30, help="validity (default 30 days)")
    token.set_defaults(run=_driver_token)
    sim = commands.add_parser("simulate", help="simulate driver phones, with faults and their ground truth")
    sim.add_argument("--drivers", type=int, default=50)
    sim.add_argument("--minutes", type=float, default=30.0, help="simulated period ending now")
    sim.add_argument("--interval", type=float, default=5.0, help="seconds between a phone's pings")
    sim.add_argument("--mode", choices=("api", "kafka"), default="api", help="post like phones, or produce")
    sim.add_argument("--url", help="ingest API base URL (default: this worker's port on 127.0.0.1)")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--prefix", default="sim", help="driver id prefix")
    sim.add_argument("--no-faults", action="store_true", help="clean phones only")
    sim.add_argument("--max-gap", type=int, default=100, help="longest offline gap, in pings")
    sim.add_argument("--lost", type=float, default=0.0, help="share of backlog pings a phone never sends")
    sim.add_argument("--out", help="ground-truth directory (default: var/simulator)")
    sim.set_defaults(run=_simulate)
    commands.add_parser(
        "console", help="the dispatcher console and its fleet-wide API on WHATSUP_CONSOLE_PORT"
    ).set_defaults(run=_console)
    dispatcher = commands.add_parser("dispatcher", help="the dispatchers who sign in to the console")
    dispatcher_commands = dispatcher.add_subparsers(
        dest="dispatcher_command", required=True, metavar="ACTION"
    )
    add = dispatcher_commands.add_parser("add", help="create a dispatcher; prints the TOTP secret as a URL")
    add.add_argument("name")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    add.set_defaults(run=_dispatcher_add)
    registry = commands.add_parser("registry", help="the WhatsApp driver registry and customer directory")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    load = registry_commands.add_parser("load", help="upsert drivers and customers from a CSV or JSON file")
    load.add_argument("file")
    load.set_defaults(run=_registry_load)
    erase = commands.add_parser("erase", help="erase a person's data (LGPD): registry, state, ClickHouse")
    subject = erase.add_mutually_exclusive_group(required=True)
    subject.add_argument("--driver", metavar="ID", help="a driver, by id")
    subject.add_argument(
        "--phone", metavar="NUMBER", help="a person, by phone number (a driver's erases them)"
    )
    erase.add_argument("--requested-by", required=True, metavar="NAME", help="the operator asking")
    erase.add_argument("--reason", default="", help="why, e.g. the data subject's request ticket")
    erase.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait for the sink to apply it and write the audit row"
    )
    erase.set_defaults(run=_erase)
    commands.add_parser(
        "rotate", help="the secrets in force, by key id, and the steps that rotate each (every 30 days)"
    ).set_defaults(run=_rotate)
    bench = commands.add_parser("bench", help="benchmarks on the local stack, written to docs/BENCHMARKS.md")
    bench.add_argument("--quick", action="store_true", help="small sizes, print only")
    bench.add_argument("--only", nargs="+", metavar="SUITE", help="run only these suites (default: all)")
    bench.set_defaults(run=_bench)
    demo = commands.add_parser("demo", help="show the pipeline at work on a running worker")
    demo.add_argument("--drivers", type=int, default=40)
    demo.add_argument("--minutes", type=float, default=20.0, help="simulated period per driver")
    demo.add_argument("--timeout", type=float, default=120.0)
    demo.set_defaults(run=_demo)
    commands.add_parser(
        "sink", help="write every topic into ClickHouse; serve /query and /metrics on WHATSUP_SINK_PORT"
    ).set_defaults(run=_sink)
    query = commands.add_parser("query", help="run read-only SQL on ClickHouse (through the sink process)")
    query.add_argument("sql")
    query.add_argument("--json", action="store_true", help="print the rows as JSON")
    query.set_defaults(run=_query)
    commands.add_parser("migrate", help="apply pending ClickHouse migrations and retention").set_defaults(
        run=_migrate
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command and return its exit status."""
    args = build_parser().parse_args(argv)
    return exit_status("whatsup", lambda: args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
