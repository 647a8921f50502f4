"""The daemon's lifecycle: startup -> serve until a stop signal -> ordered, bounded shutdown.

One task owns reconciliation: it drains the queue of rescan requests (file events, SIGHUP, the
timer, the control socket, startup), reads models.d, builds the new desired state and hands it to
the fleet whole.
"""

import asyncio
import functools
import logging
import os
import signal
from pathlib import Path
from typing import Optional

import psutil
from aiohttp import web

from engine.process_tree import descendants, kill_tree, shared_memory_of, unlink_shared_memory
from gthreadd.runtime import devices as device_probe, heap
from gthreadd.spec.desired import build_desired, scan_directory
from gthreadd.runtime.fleet import Fleet
from gthreadd.api.control import Control, add_control_routes
from gthreadd.api.http import API_PREFIX, create_app, mark_ready
from gthreadd.api.inference_routes import endpoint_labels
from gthreadd.api.lora import add_lora_routes
from gthreadd.api.upload import AUDIO_FILE_LIMIT
from gthreadd.tenants.charges import Charges
from gthreadd.tenants.keys_in_force import KeysFileError, KeysInForce
from gthreadd.runtime.scheduling import SchedulerLoop
from gthreadd.runtime.served_model import EngineFactory
from gthreadd.settings import DaemonSettings
from gthreadd.observe.metrics import Metrics, StateSnapshot
from gthreadd.observe.model_logs import ModelLogs
from gthreadd.api.watch import add_watch_routes
from gthreadd.ui.routes import add_ui_routes
from gthreadd.api.views import engine_state, summary_line
from gthreadd.systemd_notify import Notifier
from gthreadd.spec.watcher import RescanRequests, tick, watch_files
from memory.host_tier import HostTier, HostTierBusy
from scheduler.fairness import Scheduler, SchedulerConfig
from scheduler.inventory import Device

log = logging.getLogger(__name__)


def kill_engine_processes() -> None:
    """SIGKILL every process this one started (its engines and their workers): the last resort
    of the daemon's process, after the engines were asked to stop."""
    segments = shared_memory_of(descendants(os.getpid()))
    killed = [process for child in psutil.Process().children() for process in kill_tree(child.pid)]
    if killed:
        log.warning("killed %d engine process(es) still alive: %s", len(killed), [p.pid for p in killed])
        psutil.wait_procs(killed, timeout=10)
    unlink_shared_memory(segments)


class StartupRefused(RuntimeError):
    """The daemon cannot start here (its host tier directory or an address is taken): one line for
    the operator, and nothing has been started."""


ENGINE_STOP_MARGIN_S = 30.0
"""Shutdown takes at most shutdownTimeout (listeners closing, requests finishing, boots and
conversions under way) plus this, for stopping the engines."""


async def _listen(site: web.BaseSite, where: str) -> None:
    try:
        await site.start()
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # uvloop's strerror repeats the address
        raise StartupRefused(f"cannot listen on {where}: {why}") from None


class Daemon:
    def __init__(self, settings: DaemonSettings, engine_factory: EngineFactory,
                 devices: Optional[list[Device]] = None, metrics: Optional[Metrics] = None,
                 model_logs: Optional[ModelLogs] = None, max_audio_bytes: int = AUDIO_FILE_LIMIT,
                 charges: Optional[Charges] = None):
        """No side effects: the devices are probed, the host tier taken and the ports bound by
        `startup`. `max_audio_bytes`: the engines' limit on an uploaded audio file; `charges`: what
        the engines' stats charge each request's tokens to (main wires the two)."""
        self.settings = settings
        self.max_audio_bytes = max_audio_bytes
        self.keys = KeysInForce(tuple(k.get_secret_value() for k in settings.api_keys), settings.api_keys_file)
        self.metrics = metrics or Metrics()
        self.charges = charges or Charges(self.metrics.count_key_tokens)
        self.model_logs = model_logs or ModelLogs()
        """Each model's log lines; fed by main's log tap (in-process daemons have none)."""
        self.devices: list[Device] = devices or []
        self._probe_devices = devices is None
        self._engine_factory = engine_factory
        self.host_tier = HostTier(settings.host_tier_dir, settings.host_tier_bytes)
        self.rescans = RescanRequests()
        self._stop = asyncio.Event()
        self._notify = Notifier()
        self._reload_pending = False
        self._tasks: list[asyncio.Task] = []
        self._runner: Optional[web.AppRunner] = None
        self._control_runner: Optional[web.AppRunner] = None

    def _build(self) -> None:
        settings = self.settings
        if self._probe_devices:
            self.devices = device_probe.probe(settings.cpu_memory_share)
        config = SchedulerConfig(queue_limit=settings.queue_limit,
                                 queue_timeout=settings.queue_timeout.total_seconds(), prewake=settings.prewake,
                                 host_limit=settings.host_limit_bytes, max_sleeping=settings.max_sleeping_engines)
        has_gpus = any(not d.is_cpu for d in self.devices)
        events: asyncio.Queue = asyncio.Queue()
        self.fleet = Fleet(self._engine_factory, self.devices, events.put_nowait, settings.store, self.host_tier,
                           self.metrics, settings.state_dir / "lora", self.model_logs)
        self.scheduling = SchedulerLoop(Scheduler(self.devices, config), self.fleet, events=events,
                                        free_bytes=device_probe.free_bytes if has_gpus else lambda index: None,
                                        host_memory=self._host_memory)

    def _host_memory(self) -> tuple[int, int]:
        """(this process and the host tier's segments, those and every engine process): private
        memory, as the budget counts it."""
        own = device_probe.private_memory([os.getpid()]) + self.host_tier.usage().weights
        return own, own + device_probe.private_memory(descendants(os.getpid()))

    @property
    def base_url(self) -> str:
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.settings.port}"

    async def run(self) -> None:
        await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.force_exit() if self._stop.is_set() else self.stop())
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self._stop.wait()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            await self.shutdown()
            kill_engine_processes()  # the process is ours: nothing it started may outlive it
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        log.info("stopping")
        self._notify.stopping()
        self._stop.set()

    def reload(self) -> None:
        self._notify.reloading()
        self._reload_pending = True
        self.rescans.request("SIGHUP")
        self.keys.request_reload()

    def _snapshot(self) -> StateSnapshot:
        scheduler = self.scheduling.snapshot()
        devices = [(f"{'cpu' if d.is_cpu else 'gpu'}{d.index}", d.total_bytes, scheduler.claimed.get(d.index, 0),
                    scheduler.foreign.get(d.index, 0)) for d in self.devices]
        return StateSnapshot(
            {name: engine_state(m, scheduler) for name, m in self.fleet.models.items()},
            dict(scheduler.queued), devices, self.host_tier.usage(), scheduler.host, scheduler.units)

    def summary(self) -> str:
        return summary_line(list(self.fleet.models.values()), self.scheduling.snapshot())

    async def startup(self) -> None:
        """Raises StartupRefused when another gthreadd holds hostTierDir (before anything is bound)
        or an address it listens on is taken (before any engine starts)."""
        s = self.settings
        heap.tune()
        heap.freeze()  # what the imports made (vLLM, torch, transformers): most of the heap
        try:
            self.host_tier.start()
        except HostTierBusy as exc:
            raise StartupRefused(str(exc)) from None
        self._build()
        s.models_dir.mkdir(parents=True, exist_ok=True)
        s.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.keys.load(asyncio.get_running_loop().time())
        except KeysFileError as exc:
            raise StartupRefused(f"apiKeysFile: {exc}") from None
        self.metrics.add_state(self._snapshot)
        audio = self.max_audio_bytes
        app = create_app(self.fleet, self.scheduling, self.base_url, self.metrics, s.request_bytes, audio, self.keys,
                         check_keys=True, charges=self.charges)
        add_lora_routes(app)
        add_watch_routes(app)
        add_ui_routes(app)
        grace = s.shutdown_timeout.total_seconds()
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=grace)
        await self._runner.setup()
        await _listen(web.TCPSite(self._runner, s.host, s.port), f"{s.host}:{s.port}")
        control_app = create_app(self.fleet, self.scheduling, self.base_url, self.metrics, s.request_bytes, audio,
                                 self.keys, charges=self.charges)
        add_lora_routes(control_app)
        add_watch_routes(control_app)
        add_control_routes(control_app, Control(s.models_dir, functools.partial(self.rescans.request_and_wait, "control socket")), API_PREFIX)
        self._control_runner = web.AppRunner(control_app, handler_cancellation=True, access_log=None,
                                             shutdown_timeout=grace)
        await self._control_runner.setup()
        await self._bind_control_socket(s.socket_path)
        keys = len(self.keys.keyring.tenants)
        log.info("serving on %s%s, models from %s, administration on %s", self.base_url,
                 f" ({keys} API key{'s' if keys != 1 else ''})" if self.keys.required else "", s.models_dir,
                 s.socket_path)
        self._tasks = [asyncio.create_task(self.scheduling.run(), name="scheduler"),
                       asyncio.create_task(self._reconcile_loop(), name="reconcile")]
        await self.rescans.request_and_wait("startup")
        mark_ready(app)
        mark_ready(control_app)
        self._notify.ready(self.summary())
        self._tasks += [
            asyncio.create_task(self._systemd_loop(), name="systemd-notify"),
            asyncio.create_task(watch_files(s.models_dir, self.rescans), name="watch"),
            asyncio.create_task(tick(s.rescan_interval.total_seconds(), self.rescans), name="rescan-timer"),
            asyncio.create_task(self.keys.watch(asyncio.get_running_loop().time), name="watch-keys"),
        ]

    async def _bind_control_socket(self, path: Path) -> None:
        """Mode 0660: the owner and its group (gthread, under systemd) may administer."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a previous daemon's; the pid file of systemd is the guard
        await _listen(web.UnixSite(self._control_runner, str(path)), str(path))
        os.chmod(path, 0o660)

    async def shutdown(self) -> None:
        """Stop taking work; for up to shutdownTimeout in all, let requests in flight (and those
        queued for a wake) finish and engine operations under way settle, then cancel what is
        left; stop the engines (ENGINE_STOP_MARGIN_S at most) and free what they held. No engine
        process outlives it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout.total_seconds()
        scheduler_task, others = self._tasks[:1], self._tasks[1:]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        # Both listeners at once: each closes, then waits for its handlers up to shutdownTimeout.
        await asyncio.gather(*(r.cleanup() for r in (self._control_runner, self._runner) if r is not None))
        for task in scheduler_task:
            task.cancel()
        await asyncio.gather(*scheduler_task, return_exceptions=True)
        if not await self.scheduling.settle(max(0.0, deadline - loop.time())):
            log.warning("engine boots or conversions were still under way at shutdownTimeout: cancelled")
        try:
            await asyncio.wait_for(self.fleet.shutdown(), ENGINE_STOP_MARGIN_S)
        except TimeoutError:
            log.warning("engines did not stop within %.0f s", ENGINE_STOP_MARGIN_S)
        self.host_tier.close()
        log.info("stopped")

    def force_exit(self) -> None:
        """A second stop signal: exit now, as uvicorn does, without waiting for anything. Engine
        processes are killed; the host tier's segments are left for the next start to clear."""
        log.warning("second stop signal: exiting at once")
        kill_engine_processes()
        os._exit(1)

    async def _reconcile_loop(self) -> None:
        """The only place that reconciles: one rescan at a time, so a scan that began before a
        write is never applied after a later one."""
        while True:
            reasons, waiters = await self.rescans.take()
            failure: Optional[Exception] = None
            try:
                log.debug("rescanning %s (%s)", self.settings.models_dir, "; ".join(reasons))
                files = await asyncio.to_thread(scan_directory, self.settings.models_dir)
                self.fleet.apply(build_desired(files, self.fleet.desired))
                self.metrics.track_models({name: endpoint_labels(m.resource.spec)
                                           for name, m in self.fleet.models.items()})
                self.scheduling.changes.bump()  # models.d errors change what the views show
            except Exception as exc:
                log.exception("reconcile failed (%s); the current models stay as they are", "; ".join(reasons))
                failure = exc
            for waiter in (w for w in waiters if not w.done()):
                if failure is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(failure)
            if self._reload_pending:
                self._reload_pending = False
                self._notify.ready(self.summary())

    async def _systemd_loop(self) -> None:
        """WATCHDOG=1 from the event loop itself, so a wedged loop is what stops the pings; and
        STATUS= whenever the summary changes."""
        if not self._notify.enabled:
            return
        period = min(5.0, self._notify.watchdog_seconds / 2) if self._notify.watchdog_seconds else 5.0
        last = ""
        while True:
            if self._notify.watchdog_seconds:
                self._notify.watchdog()
            if (line := self.summary()) != last:
                self._notify.status(line)
                last = line
            await asyncio.sleep(period)
