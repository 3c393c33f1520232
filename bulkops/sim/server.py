"""``SimServer``: the simulator as a running HTTP server, in the current event loop or in a thread.

It opens the database, seeds it (unless it holds the demo data already: a reused ``--db`` file),
builds the API app with the extras around it — the request log (outermost), the request-size check
(431 over 16 KB of request line and headers), the rate limiter, the fault injector, then the API —
adds the ``/_sim/`` admin routes, serves on a loopback address and runs the simulated devices in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from types import TracebackType

import orjson
import structlog
from aiohttp import web

from bulkops.sim.app import PARSER_LIMIT, head_limit, make_app
from bulkops.sim.db import Database
from bulkops.sim.devices import DeviceSimulator
from bulkops.sim.faults import FaultInjector
from bulkops.sim.ratelimit import RateLimiter
from bulkops.sim.requestlog import RequestLog
from bulkops.sim.seed import DemoInfo, load_demo, seed_demo

log = structlog.get_logger("bulkops.sim.server")

@dataclass(frozen=True, slots=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    db: str = ":memory:"
    api_key: str | None = None  # the demo user's key; derived from ``seed`` when None
    seed_demo: int = 0  # devices to seed; 0 seeds organizations, users, keys, fleets, releases only
    seed: int = 0
    rate_limit: str | None = None  # rate limit SPEC, e.g. "fixed:1000/10s"
    faults: str | None = None  # fault SPEC, e.g. "503=0.05,seed=1"
    converge_delay: float = 5.0  # seconds until a device runs its new target release
    stuck_fraction: float = 0.0
    offline_fraction: float = 0.0
    tick_interval: float = 1.0  # seconds between device simulation steps
    bad_release: str | None = None  # a release id or "<fleet slug>@<semver>" that some devices fail on
    bad_release_fraction: float = 0.0  # the share of devices told to run bad_release that give up on it
    allow_non_loopback: bool = False  # serve on a non-loopback address (off: refused)

    def __repr__(self) -> str:  # the key stays out of reprs
        shown = {k: v for k, v in asdict(self).items() if k != "api_key"}
        return f"SimConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def check_host(host: str, *, allow_non_loopback: bool) -> None:
    """Refuse to serve anywhere but a loopback address unless explicitly allowed."""
    if allow_non_loopback or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"bulkops sim serves only on a loopback address (127.0.0.1, ::1, localhost), "
                         f"got {host!r}; pass --allow-non-loopback to serve on it anyway")


def resolve_release(demo: DemoInfo, ref: str | None) -> int | None:
    """A release id given as a number or as ``<fleet slug>@<semver>`` of the demo data."""
    if ref is None:
        return None
    if ref.isdigit():
        return int(ref)
    if ref in demo.releases:
        return int(demo.releases[ref])
    known = ", ".join(sorted(demo.releases))
    raise ValueError(f"bad release {ref!r} is not a release id or one of {known}")


class SimServer:
    """``async with SimServer(config) as sim:`` serves until the block ends; or ``start_in_thread()``."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        check_host(self.config.host, allow_non_loopback=self.config.allow_non_loopback)
        self.request_log = RequestLog()
        self.rate_limiter = RateLimiter(self.config.rate_limit or "none")
        self.faults = FaultInjector(self.config.faults or "none")
        self._db: Database | None = None
        self._devices: DeviceSimulator | None = None
        self._demo: DemoInfo | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # --- what tests and tools read ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — the API root, without ``/v7``."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the simulator is not running")
        return self._db

    @property
    def demo(self) -> DemoInfo:
        if self._demo is None:
            raise RuntimeError("the simulator is not running")
        return self._demo

    @property
    def api_key(self) -> str:
        return self.demo.api_key

    @property
    def devices(self) -> DeviceSimulator:
        if self._devices is None:
            raise RuntimeError("the simulator is not running")
        return self._devices

    def __repr__(self) -> str:
        return f"SimServer(url={self._url!r})"

    # --- lifecycle in the current event loop -------------------------------------------------------

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        self._db = Database.open(cfg.db)
        self._demo = load_demo(self._db, api_key=cfg.api_key) or seed_demo(
            self._db, cfg.seed_demo, seed=cfg.seed, api_key=cfg.api_key)
        try:
            bad_release = resolve_release(self._demo, cfg.bad_release)
        except ValueError:
            await self.close()
            raise
        self._devices = DeviceSimulator(
            self._db, converge_delay=cfg.converge_delay, stuck_fraction=cfg.stuck_fraction,
            offline_fraction=cfg.offline_fraction, seed=cfg.seed, interval=cfg.tick_interval,
            bad_release=bad_release, bad_release_fraction=cfg.bad_release_fraction,
        )
        # request log (outermost, added by make_app), then the 431 check (before the limiter, as the real
        # API's HTTP server refuses an oversized head before its rate limiter sees it), limiter, faults
        middlewares = [head_limit, self.rate_limiter.make_middleware(), self.faults.make_middleware()]
        app = make_app(self._db, middlewares=middlewares, request_log=self.request_log)
        self.request_log.add_routes(app)
        self.rate_limiter.add_routes(app)
        self.faults.add_routes(app)
        app.router.add_post("/_sim/devices/tick", self._tick)
        app.cleanup_ctx.append(self._run_devices)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     max_line_size=PARSER_LIMIT, max_field_size=PARSER_LIMIT)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, cfg.host, cfg.port)
            await site.start()
        except BaseException:
            await self.close()
            raise
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        log.info("bulkops.sim.server.started", url=self._url, devices=cfg.seed_demo,
                 rate_limit=self.rate_limiter.statistics().spec, faults=self.faults.statistics().spec)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._url = None

    async def _run_devices(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self.devices.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _tick(self, request: web.Request) -> web.Response:
        result = self.devices.tick()
        return web.Response(body=orjson.dumps(asdict(result)), content_type="application/json")

    # --- lifecycle from a plain thread --------------------------------------------------------------

    def start_in_thread(self) -> SimServer:
        """Serve from a thread with its own event loop; returns once the server answers."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._thread_stop.wait()
            finally:
                await self.close()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="bulkops-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with ``start_in_thread()`` and wait until it is closed."""
        thread, loop, event = self._thread, self._thread_loop, self._thread_stop
        if thread is None or loop is None or event is None:
            return
        loop.call_soon_threadsafe(event.set)
        thread.join()
        self._thread = self._thread_loop = self._thread_stop = None
