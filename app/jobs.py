"""Background inference for the app: one worker pool shared by every session of the server.

- :class:`JobManager` runs :func:`models.inference.run_inference` in worker processes
  (:mod:`app.inference_worker`; started on first use, at a lower CPU priority, one torch thread
  each by default), so inference neither holds the server's GIL nor outruns its event loop for
  the CPU, and a crash in a model (out of memory, ...) fails the job, not the server; a thread
  mode runs any Python callable in the server process instead (tests);
- identical requests (model, orbit, source, world seed) share one job (deduplicated);
- each job records progress (done/total/message), the device it runs on, and can be cancelled
  (a ``threading.Event`` on the job; in a worker, a shared ``multiprocessing.Event`` handed to
  run_inference);
- results land in the catalogue's model-output store, so every view and every session sees them;
  a complete store is a cache hit and finishes at once.

:class:`RunControl` is the sidebar component: Run / Cancel per selected model, a progress bar,
the device, and a nudge to the views when an output lands (polled, also for jobs started by
another session).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import panel as pn
import param

from app import data, inference_worker
from app.state import Selection

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")


@dataclass
class Job:
    model: str
    orbit: int
    source: str = "synthetic"
    world: int = 0
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 1
    message: str = "queued"
    device: str | None = None
    cache_hit: bool | None = None
    error: str | None = None
    path: str | None = None
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    info: dict = field(default_factory=dict)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    future: object = field(default=None, repr=False)

    @property
    def key(self) -> tuple:
        return (self.model, int(self.orbit), self.source, int(self.world))

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else max(0.0, min(1.0, self.done / self.total))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def describe(self) -> str:
        dev = f" on {self.device}" if self.device else ""
        if self.status == "done":
            how = "cached result" if self.cache_hit else f"computed{dev}"
            return f"{self.model} · orbit {self.orbit}: {how}"
        if self.status == "failed":
            return f"{self.model} · orbit {self.orbit}: failed: {self.error}"
        if self.status == "cancelled":
            return f"{self.model} · orbit {self.orbit}: cancelled"
        return f"{self.model} · orbit {self.orbit}: {self.message}{dev} ({100 * self.fraction:.0f} %)"


def _default_runner():
    from models.inference import run_inference

    return run_inference


def _device_label(pref: str) -> str | None:
    try:
        from models.inference import choose_device, device_name

        return device_name(choose_device(pref))
    except Exception as e:  # device problems surface when the job runs
        log.debug("device query failed: %s", e)
        return None


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{why}"
    return f"exited with code {code}"


class _Worker:
    """One inference worker process (see :mod:`app.inference_worker`) and its pipe."""

    def __init__(self, ctx, nice: int, torch_threads: int | None):
        self.conn, child = ctx.Pipe()
        self.cancel = ctx.Event()
        self.lock = threading.Lock()
        self.busy = False
        self.proc = ctx.Process(target=inference_worker.main, args=(child, self.cancel, nice, torch_threads),
                                name="raincheck-infer-worker", daemon=True)
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        self.cancel.set()
        with self.lock:
            if not self.busy:
                try:
                    self.conn.send(None)
                except (OSError, ValueError):
                    pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(1.0)
        if self.proc.is_alive():  # pragma: no cover - ignored SIGTERM
            self.proc.kill()
            self.proc.join(1.0)
        self.conn.close()


class JobManager:
    """Runs inference jobs for every session of the server; dedups identical requests.

    ``mode="process"`` (the default without a ``runner``; what ``raincheck serve`` uses): jobs
    run in up to ``max_workers`` worker processes, started on first use with the ``spawn``
    (or ``forkserver``) start method, at CPU priority ``nice`` (added to the server's) and with
    ``torch_threads`` torch intra-op threads each (``None``: torch's default). A crash in a
    worker (out of memory, a segfault) fails only its job, with a clear message; the next job
    starts a fresh worker. Progress and cancel cross the process boundary (a pipe and a shared
    event); a ``runner`` must then be picklable (a module-level function).

    ``mode="thread"`` (the default when a ``runner`` is given): jobs run in threads of the
    server process, with ``runner`` (any callable with :func:`models.inference.run_inference`'s
    signature) called directly.

    ``history`` keeps the last jobs created (newest last), for tests and diagnostics.
    """

    def __init__(self, runner: Callable | None = None, max_workers: int = 1, device: str = "auto",
                 mode: str | None = None, nice: int = 10, torch_threads: int | None = 1,
                 start_method: str = "spawn", history: int = 1000):
        mode = mode or ("thread" if runner is not None else "process")
        if mode not in ("thread", "process"):
            raise ValueError(f"unknown job mode {mode!r}; use 'process' or 'thread'")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start method {start_method!r}: use 'spawn' or 'forkserver' "
                             "(the server has threads: fork is unsafe)")
        self._runner = runner
        self._runner_blob: bytes | None = None
        if mode == "process" and runner is not None:
            try:
                self._runner_blob = pickle.dumps(runner)
            except Exception as e:
                raise ValueError(f"runner {runner!r} cannot be sent to a worker process ({e}); "
                                 "use a module-level function or mode='thread'") from None
        self.mode = mode
        self.max_workers = int(max_workers)
        self.device = device
        self.nice = int(nice)
        self.torch_threads = torch_threads
        self._ctx = multiprocessing.get_context(start_method) if mode == "process" else None
        # in process mode these threads only hand jobs to the workers and relay their messages
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="raincheck-infer")
        self._slots: queue.LifoQueue = queue.LifoQueue()  # idle workers; None: not started (yet)
        for _ in range(self.max_workers):
            self._slots.put(None)
        self._workers: set[_Worker] = set()
        self._jobs: dict[tuple, Job] = {}
        self.history: deque[Job] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def runner(self) -> Callable:
        return self._runner or _default_runner()

    def submit(self, model: str, orbit: int, source: str = "synthetic", world: int = 0) -> Job:
        """Start (or join) the job for (model, orbit, source, world)."""
        key = (model, int(orbit), source, int(world))
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.active:
                return job
            if self._closed:
                raise RuntimeError("the job manager has been shut down")
            job = Job(model, int(orbit), source, int(world))
            self._jobs[key] = job
            self.history.append(job)
            job.future = self._pool.submit(self._run, job)
        return job

    def get(self, model: str, orbit: int, source: str = "synthetic", world: int = 0) -> Job | None:
        with self._lock:
            return self._jobs.get((model, int(orbit), source, int(world)))

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, model: str, orbit: int, source: str = "synthetic", world: int = 0) -> bool:
        job = self.get(model, orbit, source, world)
        if job is None or not job.active:
            return False
        job.cancel_event.set()
        if job.status == "queued":
            job.message = "cancelling"
        return True

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        if job.future is not None:
            try:
                job.future.result(timeout=timeout)
            except Exception:  # recorded on the job
                pass
        return job

    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (process mode)."""
        with self._lock:
            return [w.proc.pid for w in self._workers if w.alive()]

    def shutdown(self, timeout: float = 2.0) -> None:
        """Cancel every job and stop the workers (a busy one is terminated after ``timeout`` s)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
        for j in self.jobs():
            j.cancel_event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.stop(timeout)

    # -- worker ------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        if job.cancel_event.is_set():
            job.status, job.message, job.finished = "cancelled", "cancelled", time.time()
            return
        job.status, job.message = "running", "starting"
        if self.mode == "process":
            self._run_in_worker(job)
        else:
            self._run_in_thread(job)

    def _finish(self, job: Job, path, info: dict) -> None:
        job.info = dict(info)
        job.path = str(path)
        job.cache_hit = bool(info.get("cache_hit", False))
        if info.get("device"):
            job.device = info["device"]
        job.done, job.total = job.total, job.total
        job.status, job.message, job.finished = "done", "done", time.time()

    def _fail(self, job: Job, error: str, cancelled: bool = False, detail: str | None = None) -> None:
        job.finished = time.time()
        cancelled = cancelled or job.cancel_event.is_set()
        job.status = "cancelled" if cancelled else "failed"
        job.error = None if cancelled else error
        job.message = job.status
        if not cancelled:
            log.error("inference %s failed: %s%s", job.key, error, f"\n{detail}" if detail else "")

    def _progress(self, job: Job, done, total, message="") -> None:
        job.done, job.total = int(done), max(int(total), 1)
        job.message = str(message) if message else "running"

    def _run_in_thread(self, job: Job) -> None:
        job.device = _device_label(self.device)
        info: dict = {}
        try:
            path = self.runner(job.model, job.orbit, source=job.source, world_seed=job.world,
                               device=self.device, progress=lambda *a: self._progress(job, *a),
                               cancel=job.cancel_event, info=info)
        except Exception as e:
            self._fail(job, f"{type(e).__name__}: {e}", cancelled=type(e).__name__ == "InferenceCancelled",
                       detail=traceback.format_exc())
            return
        self._finish(job, path, info)

    def _run_in_worker(self, job: Job) -> None:
        w = self._slots.get()
        try:
            if w is None or not w.alive():
                if w is not None:
                    self._forget(w)
                job.message = "starting the inference worker"
                try:
                    w = _Worker(self._ctx, self.nice, self.torch_threads)
                except Exception as e:
                    w = None
                    self._fail(job, f"could not start an inference worker process: {type(e).__name__}: {e}")
                    return
                with self._lock:
                    if self._closed:
                        self._workers.discard(w)
                        w.stop(0)
                        w = None
                        self._fail(job, "the job manager has been shut down", cancelled=True)
                        return
                    self._workers.add(w)
            if job.cancel_event.is_set():
                self._fail(job, "cancelled", cancelled=True)
                return
            env = {k: v for k, v in os.environ.items() if k.startswith(inference_worker.ENV_PREFIX)}
            kwargs = dict(model=job.model, orbit=job.orbit, source=job.source, world_seed=job.world,
                          device=self.device)
            with w.lock:
                w.cancel.clear()
                w.busy = True
                try:
                    w.conn.send(("run", self._runner_blob, kwargs, env))
                except (OSError, ValueError):
                    pass  # a dead worker: found below
            try:
                self._relay(job, w)
            finally:
                w.busy = False
        finally:
            self._slots.put(w if w is not None and w.alive() else None)

    def _relay(self, job: Job, w: _Worker) -> None:
        """Copy the worker's messages onto ``job`` until it finishes (or the worker dies)."""
        cancel_sent = False
        while True:
            if job.cancel_event.is_set() and not cancel_sent:
                w.cancel.set()
                cancel_sent = True
            try:
                if not w.conn.poll(0.1):
                    if w.alive():
                        continue
                    if not w.conn.poll(0):
                        raise EOFError
                msg = w.conn.recv()
            except (EOFError, OSError, ValueError):
                w.proc.join(5.0)
                code = w.proc.exitcode
                self._forget(w)
                self._fail(job, f"WorkerDied: the inference worker process (pid {w.proc.pid}) "
                                f"{_exit_reason(code)} while running this job; the server is fine "
                                "and the next job starts a fresh worker")
                return
            kind = msg[0]
            if kind == "started":
                job.device = msg[1] or job.device
                job.message = "running"
            elif kind == "progress":
                self._progress(job, *msg[1:])
            elif kind == "done":
                self._finish(job, msg[1], msg[2])
                return
            elif kind == "error":
                name, text, tb = msg[1:]
                self._fail(job, f"{name}: {text}", cancelled=name == "InferenceCancelled", detail=tb)
                return

    def _forget(self, w: _Worker) -> None:
        with self._lock:
            self._workers.discard(w)
        try:
            w.conn.close()
        except OSError:
            pass


_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def get_manager() -> JobManager:
    """The server-wide job manager (shared by every session)."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager()
        return _MANAGER


def set_manager(manager: JobManager | None) -> None:
    """Replace the server-wide manager (tests, or a server with another runner)."""
    global _MANAGER
    with _MANAGER_LOCK:
        _MANAGER = manager


class RunControl(pn.viewable.Viewer):
    """Run / Cancel inference for each selected model on the current orbit, with progress."""

    selection = param.ClassSelector(class_=Selection, default=None)
    landed = param.Event(doc="an output for the current orbit just landed")
    poll_ms = param.Integer(default=500)

    def __init__(self, selection, manager: JobManager | None = None, **params):
        super().__init__(**params)
        self.selection = selection
        self.manager = manager or get_manager()
        self._rows = pn.Column(sizing_mode="stretch_width")
        self._seen: dict[tuple, str] = {}
        self._cb = None
        selection.param.watch(lambda e: self._rebuild(), ["models", "orbit", "world", "source"])
        self._rebuild()

    def __panel__(self):
        return self._rows

    def start_polling(self):
        if self._cb is None and pn.state.curdoc is not None:
            self._cb = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    def _job(self, model):
        s = self.selection
        return self.manager.get(model, s.orbit, "synthetic", s.world)

    def _rebuild(self):
        s = self.selection
        self._widgets = {}
        rows = []
        if s.source != "synthetic":
            rows.append(pn.pane.Markdown("_On-demand inference runs on synthetic orbits; use "
                                         "`raincheck infer` for real granules._"))
        elif not s.models:
            rows.append(pn.pane.Markdown("_Select a model to run it on this orbit._"))
        else:
            for m in s.models:
                run = pn.widgets.Button(label=f"Run {m}", color="primary", sizing_mode="stretch_width",
                                        css_classes=["rc-run"])
                cancel = pn.widgets.Button(label="Cancel", color="warning", width=80, disabled=True)
                bar = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width", visible=False,
                                             height=12)
                text = pn.pane.Markdown("", sizing_mode="stretch_width", styles={"font-size": "12px"},
                                        margin=(0, 5))
                run.on_click(lambda e, m=m: self.run(m))
                cancel.on_click(lambda e, m=m: self.cancel(m))
                self._widgets[m] = (run, cancel, bar, text)
                rows.append(pn.Column(pn.Row(run, cancel, sizing_mode="stretch_width"), bar, text,
                                      sizing_mode="stretch_width", margin=(0, 0, 6, 0)))
        self._rows.objects = rows
        self._stored = {m: data.output_stored(m, s.orbit, s.world) for m in self._widgets}
        self.poll()

    def run(self, model):
        s = self.selection
        job = self.manager.submit(model, s.orbit, "synthetic", s.world)
        self._seen[job.key] = job.status
        self.start_polling()
        self.poll()
        return job

    def cancel(self, model):
        s = self.selection
        self.manager.cancel(model, s.orbit, "synthetic", s.world)
        self.poll()

    def poll(self):
        """Copy job states into the widgets; fire ``landed`` when an output appears."""
        landed = False
        for m, (run, cancel, bar, text) in getattr(self, "_widgets", {}).items():
            job = self._job(m)
            if job is None:
                bar.visible = False
                text.object = (f"{m} · orbit {self.selection.orbit}: output in the store (Run is a cache hit)"
                               if getattr(self, "_stored", {}).get(m) else "")
                run.disabled = False
                cancel.disabled = True
                continue
            prev = self._seen.get(job.key)
            self._seen[job.key] = job.status
            if job.status == "done" and prev is not None and prev != "done":
                landed = True
            bar.visible = job.active
            bar.value = int(round(100 * job.fraction))
            run.disabled = job.active
            cancel.disabled = not job.active
            text.object = job.describe()
        if landed:
            self.landed = True
