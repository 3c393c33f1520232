"""``bulkops sim``: run the local balena API simulator until SIGINT or SIGTERM.

Once it serves it prints two lines a shell can ``eval``::

    BALENA_API_URL=http://127.0.0.1:PORT
    BALENA_API_KEY=sim_...
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from bulkops.sim.server import SimConfig

# The server and its parsers are imported only when `bulkops sim` runs: the rest of the CLI starts
# without loading aiohttp's server side.


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _checked(module: str, name: str) -> Any:
    def check(text: str) -> str:
        parse = getattr(importlib.import_module(module), name)
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return text

    return check


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sim`` subcommand to the ``bulkops`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim", help="run a local balena API v7 simulator",
        description="Serve a local balena API v7 (SQLite, rate limiter, faults, simulated devices).",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (loopback only; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port to bind, 0 for any free port (default 8080)")
    parser.add_argument("--db", default=":memory:", help="SQLite file, or :memory: (default)")
    parser.add_argument("--seed-demo", type=int, default=1000, metavar="N",
                        help="devices of demo data to seed (default 1000; 0: fleets and users only)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the demo data and device fates (default 0)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="the demo user's API key (default: derived from --seed)")
    parser.add_argument("--rate-limit", type=_checked("bulkops.sim.ratelimit", "parse_spec"), default=None,
                        metavar="SPEC",
                        help="e.g. fixed:1000/10s, fixed:100/10s,block=60s, bucket:50/s,burst=100, none")
    parser.add_argument("--faults", type=_checked("bulkops.sim.faults", "parse_faults"), default=None,
                        metavar="SPEC",
                        help="e.g. 503=0.05,reset=0.02,lost=0.02,latency=5ms~3ms,seed=42")
    parser.add_argument("--converge-delay", type=_non_negative, default=5.0, metavar="S",
                        help="seconds until a device runs its new target release (default 5)")
    parser.add_argument("--stuck-fraction", type=_fraction, default=0.0, metavar="F",
                        help="share of devices that never converge (default 0)")
    parser.add_argument("--offline-fraction", type=_fraction, default=0.0, metavar="F",
                        help="share of devices that go offline instead of converging (default 0)")
    parser.add_argument("--bad-release", default=None, metavar="RELEASE",
                        help="a release id or <fleet slug>@<semver> (e.g. acme/gateway@2.0.0) that "
                             "--bad-release-fraction of the devices told to run it fail on")
    parser.add_argument("--bad-release-fraction", type=_fraction, default=0.0, metavar="F",
                        help="share of devices that give up on --bad-release (default 0)")
    parser.add_argument("--allow-non-loopback", action="store_true",
                        help="allow a --host that is not a loopback address")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    from bulkops.sim.server import SimConfig  # noqa: PLC0415 - lazy, see the imports

    return SimConfig(
        host=args.host, port=args.port, db=args.db, api_key=args.api_key, seed_demo=args.seed_demo,
        seed=args.seed, rate_limit=args.rate_limit, faults=args.faults, converge_delay=args.converge_delay,
        stuck_fraction=args.stuck_fraction, offline_fraction=args.offline_fraction,
        bad_release=args.bad_release, bad_release_fraction=args.bad_release_fraction,
        allow_non_loopback=args.allow_non_loopback,
    )


async def serve(config: SimConfig) -> None:
    from bulkops.sim.server import SimServer  # noqa: PLC0415 - lazy, see the imports

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SimServer(config) as sim:
            sys.stdout.write(f"BALENA_API_URL={sim.url}\nBALENA_API_KEY={sim.api_key}\n")
            sys.stdout.flush()
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 after a clean shutdown, 2 for a refused configuration."""
    if not structlog.is_configured():
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from bulkops.sim.server import check_host  # noqa: PLC0415 - lazy, see the imports

    try:
        check_host(args.host, allow_non_loopback=args.allow_non_loopback)
        config = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"bulkops sim: {exc}\n")
        return 2
    try:
        asyncio.run(serve(config))
    except ValueError as exc:  # e.g. a --bad-release that is not in the data
        sys.stderr.write(f"bulkops sim: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"bulkops sim: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}\n")
        return 1
    return 0
