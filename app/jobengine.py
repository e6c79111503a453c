"""The app's job engine: one background-job system shared by every session of the server.
It imports no Panel, Bokeh or HoloViews (the widgets that show jobs are :mod:`app.jobs`), so a
worker process, the command line or a test can use it without a web stack.

A *job* is a picklable top-level function plus keyword arguments, called as
``fn(**kwargs, progress=..., cancel=..., info=...)``, whose return value (a path) is its result.
Each *kind* of job (:class:`Kind`) has its own lane: its own worker processes (or threads), so
jobs of one kind never wait for jobs of another. The app has three kinds:

- ``"inference"`` (:func:`app.inference_worker.infer`, :class:`InferenceJob`): one model on one
  orbit (:func:`models.run.run_inference`), requested with :meth:`JobManager.submit`, or on one
  real granule (:func:`models.granule_run.run_granule`), :meth:`JobManager.submit_granule`;
- ``"box"`` (:func:`app.inference_worker.build_box`, :class:`app.boxjobs.BoxJob`): the box cube
  of a region the climatology cube does not hold, set up by :class:`app.boxjobs.BoxJobManager`
  (one worker, at a lower CPU priority than inference: a build takes minutes to an hour, and a
  user waiting for one orbit should not wait for it);
- ``"compare"`` (:func:`app.comparejobs.run_comparison`, :class:`app.comparejobs.ComparisonJob`):
  the model comparison (:func:`evaluation.compare.compare`), set up by
  :class:`app.comparejobs.ComparisonJobs` (one worker, below inference too).

:class:`JobManager` runs them in worker processes (:mod:`app.inference_worker`; started on first
use, at a lower CPU priority, one torch thread each by default), so the work neither holds the
server's GIL nor outruns its event loop for the CPU, and a crash (out of memory, ...) fails the
job, not the server; a thread mode runs any Python callable in the server process instead
(tests). For every kind:

- identical requests (the same kind and key) share one job (deduplicated);
- each job records progress (done/total/message), where it runs (device, worker pid), and can
  be cancelled (a ``threading.Event`` on the job; in a worker, a shared ``multiprocessing.Event``
  handed to the function); at interpreter exit running jobs are cancelled, not waited for;
- results land in stores on disk (the model-output store, box cubes, the comparison result), so
  every view and every session sees them; a complete store is a cache hit and finishes at once.
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

from app import data, inference_worker

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
MODES = ("thread", "process")


@dataclass(eq=False)
class Job:
    """One background job: ``kind``'s function called with ``kwargs`` (see :class:`JobManager`)."""

    kind: str
    key: object
    kwargs: dict = field(default_factory=dict, repr=False)
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 1
    message: str = "queued"
    device: str | None = None
    error: str | None = None
    result: str | None = None
    info: dict = field(default_factory=dict)  # what the function reported (pid: where it ran)
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    future: object = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.key}"

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else max(0.0, min(1.0, self.done / self.total))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def describe(self) -> str:
        if self.status == "done":
            return f"{self.label}: {self.done_text()}"
        if self.status == "failed":
            return f"{self.label}: failed: {self.error}"
        if self.status == "cancelled":
            return f"{self.label}: {self.cancelled_text()}"
        return f"{self.label}: {self.progress_text()}"

    def done_text(self) -> str:
        return "done"

    def cancelled_text(self) -> str:
        return "cancelled"

    def progress_text(self) -> str:
        dev = f" on {self.device}" if self.device else ""
        return f"{self.message}{dev} ({100 * self.fraction:.0f} %)"


class InferenceJob(Job):
    """One model on one orbit (:func:`models.run.run_inference`) or on one real granule
    (:func:`models.granule_run.run_granule`; keyed by the file's content, :func:`granule_key`)."""

    model = property(lambda self: self.kwargs["model"])
    orbit = property(lambda self: self.kwargs["orbit"])
    source = property(lambda self: self.kwargs["source"])
    world = property(lambda self: self.kwargs["world_seed"])
    granule = property(lambda self: self.kwargs.get("granule"))
    path = property(lambda self: self.result)

    @property
    def cache_hit(self) -> bool | None:
        return bool(self.info.get("cache_hit", False)) if self.status == "done" else None

    @property
    def label(self) -> str:
        if self.granule is not None:
            return f"{self.model} · {self.source.removeprefix('pps-')} granule of orbit {self.orbit}"
        return f"{self.model} · orbit {self.orbit}"

    def done_text(self) -> str:
        return "cached result" if self.cache_hit else f"computed{f' on {self.device}' if self.device else ''}"


def granule_key(model: str, content: str) -> tuple:
    """The key of ``model``'s inference job on the granule file whose content sha256 is ``content``."""
    return (model, "granule", str(content))


@dataclass(frozen=True)
class Kind:
    """How the jobs of one kind run: ``fn`` (a module-level function, called as
    ``fn(**kwargs, progress=, cancel=, info=)``) in ``workers`` worker processes of the kind's
    own (``mode="process"``) at CPU priority ``nice`` with ``torch_threads`` torch threads each,
    or in ``workers`` threads of the server (``mode="thread"``); jobs are ``job_class``."""

    fn: Callable
    mode: str = "process"
    workers: int = 1
    nice: int = 10
    torch_threads: int | None = 1
    job_class: type = Job


def sendable(obj, what: str) -> None:
    """ValueError unless ``obj`` can be sent to a worker process."""
    try:
        pickle.dumps(obj)
    except Exception as e:
        raise ValueError(f"{what} {obj!r} cannot be sent to a worker process ({e}); "
                         "use a module-level function or mode='thread'") from None


def _is_cancellation(name: str) -> bool:
    # models.base.InferenceCancelled, evaluation.cube.BuildCancelled, evaluation.compare.ComparisonCancelled
    return name.endswith("Cancelled")


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
    """One worker process (:func:`app.inference_worker.main`) and its pipe."""

    def __init__(self, ctx, kind: str, nice: int, torch_threads: int | None, warm_models=None):
        self.conn, child = ctx.Pipe()
        self.cancel = ctx.Event()
        self.lock = threading.Lock()
        self.busy = False
        self.proc = ctx.Process(target=inference_worker.main,
                                args=(child, self.cancel, nice, torch_threads, warm_models),
                                name=f"raincheck-{kind}-worker", daemon=True)
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def send(self, msg) -> None:
        self.conn.send_bytes(pickle.dumps(msg))

    def stop(self, timeout: float = 2.0) -> None:
        self.cancel.set()
        with self.lock:
            if not self.busy:
                try:
                    self.send(None)
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


class _Lane:
    """The jobs of one kind: the threads that run them (or relay for their worker processes)
    and the idle workers."""

    def __init__(self, name: str, kind: Kind):
        self.name, self.kind = name, kind
        self.pool = ThreadPoolExecutor(max_workers=kind.workers, thread_name_prefix=f"raincheck-{name}")
        self.slots: queue.LifoQueue = queue.LifoQueue()  # idle workers; None: not started (yet)
        for _ in range(kind.workers):
            self.slots.put(None)
        self.workers: set[_Worker] = set()


class JobManager:
    """Runs background jobs for every session of the server; dedups identical requests.

    Each kind of job (:meth:`add_kind`) has its own lane of workers, so a long box-cube build
    never holds up inference. The ``"inference"`` kind is set up here:

    ``mode="process"`` (the default without a ``runner``; what ``raincheck serve`` uses): jobs
    run in up to ``max_workers`` worker processes, started on first use with the ``spawn``
    (or ``forkserver``) start method, at CPU priority ``nice`` (added to the server's) and with
    ``torch_threads`` torch intra-op threads each (``None``: torch's default). A crash in a
    worker (out of memory, a segfault) fails only its job, with a clear message; the next job
    starts a fresh worker. Progress and cancel cross the process boundary (a pipe and a shared
    event); a ``runner`` must then be picklable (a module-level function).

    ``mode="thread"`` (the default when a ``runner`` is given): jobs run in threads of the
    server process, with ``runner`` (any callable with :func:`models.run.run_inference`'s
    signature) called directly.

    ``history`` keeps the last jobs created, of every kind (newest last), for tests and
    diagnostics.
    """

    def __init__(self, runner: Callable | None = None, max_workers: int = 1, device: str = "auto",
                 mode: str | None = None, nice: int = 10, torch_threads: int | None = 1,
                 start_method: str = "spawn", history: int = 1000):
        mode = mode or ("thread" if runner is not None else "process")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start method {start_method!r}: use 'spawn' or 'forkserver' "
                             "(the server has threads: fork is unsafe)")
        if mode == "process" and runner is not None:
            sendable(runner, "runner")
        self._runner = runner
        self.mode = mode
        self.max_workers = int(max_workers)
        self.device = device
        self.nice = int(nice)
        self.torch_threads = torch_threads
        self._start_method = start_method
        self._ctx = None
        self._lanes: dict[str, _Lane] = {}
        self._jobs: dict[tuple, Job] = {}
        self.history: deque[Job] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._closed = False
        self.add_kind("inference", Kind(inference_worker.infer, mode, self.max_workers, self.nice, torch_threads,
                                        InferenceJob))
        # at interpreter exit, cancel running jobs (a box build keeps its finished orbits)
        # instead of the exit waiting for them to finish
        try:
            threading._register_atexit(self._cancel_all)
        except (AttributeError, RuntimeError):  # pragma: no cover - other Pythons / already exiting
            pass

    # -- kinds and jobs ----------------------------------------------------------------
    def add_kind(self, name: str, kind: Kind) -> Kind:
        """Set up the lane of jobs of kind ``name`` (again with the same ``kind``: a no-op)."""
        if kind.mode not in MODES:
            raise ValueError(f"unknown job mode {kind.mode!r}; use 'process' or 'thread'")
        if kind.mode == "process":
            sendable(kind.fn, f"the {name} job function")
        with self._lock:
            have = self._lanes.get(name)
            if have is not None:
                if have.kind != kind:
                    raise ValueError(f"job kind {name!r} is already set up differently: {have.kind}")
                return have.kind
            if kind.mode == "process" and self._ctx is None:
                self._ctx = multiprocessing.get_context(self._start_method)
            self._lanes[name] = _Lane(name, kind)
        return kind

    def kind(self, name: str) -> Kind:
        return self._lanes[name].kind

    def submit_job(self, kind: str, key, **kwargs) -> Job:
        """Start (or join) the job of ``kind`` with ``key``: ``kind``'s function with ``kwargs``."""
        lane = self._lanes[kind]
        with self._lock:
            job = self._jobs.get((kind, key))
            if job is not None and job.active:
                return job
            if self._closed:
                raise RuntimeError("the job manager has been shut down")
            job = lane.kind.job_class(kind, key, dict(kwargs))
            self._jobs[(kind, key)] = job
            self.history.append(job)
            job.future = lane.pool.submit(self._run, lane, job)
        return job

    def find_job(self, kind: str, key) -> Job | None:
        with self._lock:
            return self._jobs.get((kind, key))

    def cancel_job(self, kind: str, key) -> bool:
        job = self.find_job(kind, key)
        if job is None or not job.active:
            return False
        job.cancel_event.set()
        job.message = "cancelling"
        return True

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            return [j for (k, _), j in self._jobs.items() if kind is None or k == kind]

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        if job.future is not None:
            try:
                job.future.result(timeout=timeout)
            except Exception:  # recorded on the job
                pass
        return job

    def worker_pids(self, kind: str | None = "inference") -> list[int]:
        """Process ids of the live worker processes of ``kind`` (``None``: of every kind)."""
        with self._lock:
            return [w.proc.pid for name, lane in self._lanes.items() if kind is None or name == kind
                    for w in lane.workers if w.alive()]

    def warm(self, kind: str = "inference", models=None) -> int:
        """Start ``kind``'s worker processes now (not at the first job) and have each import
        torch and the models, load ``models`` (default: every registered model, for the
        inference lane) and run them once, so that the first Run waits for none of it; returns
        how many workers were started. Thread mode, or workers already running: nothing to do."""
        lane = self._lanes[kind]
        if lane.kind.mode != "process":
            return 0
        if models is None:
            models = data.list_models() if kind == "inference" else []
        started, idle = 0, []
        while True:  # the idle slots (a busy worker is warm already)
            try:
                idle.append(lane.slots.get_nowait())
            except queue.Empty:
                break
        try:
            for i, w in enumerate(idle):
                if w is not None and w.alive():
                    continue
                with self._lock:
                    if self._closed:
                        break
                    if w is not None:
                        lane.workers.discard(w)
                    w = _Worker(self._ctx, lane.name, lane.kind.nice, lane.kind.torch_threads, list(models))
                    lane.workers.add(w)
                idle[i] = w
                started += 1
        finally:
            for w in idle:
                lane.slots.put(w)
        return started

    def _cancel_all(self, kind: str | None = None) -> None:
        for j in self.jobs(kind):
            j.cancel_event.set()

    def shutdown(self, timeout: float = 2.0) -> None:
        """Cancel every job and stop the workers (a busy one is terminated after ``timeout`` s)."""
        with self._lock:
            self._closed = True
            lanes = list(self._lanes.values())
            workers = [w for lane in lanes for w in lane.workers]
            for lane in lanes:
                lane.workers.clear()
        self._cancel_all()
        for lane in lanes:
            lane.pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.stop(timeout)

    # -- inference ---------------------------------------------------------------------
    def submit(self, model: str, orbit: int, source: str = "synthetic", world: int = 0) -> InferenceJob:
        """Start (or join) the inference job for (model, orbit, source, world)."""
        extra = {"runner": self._runner} if self._runner is not None else {}
        return self.submit_job("inference", (model, int(orbit), source, int(world)), model=model, orbit=int(orbit),
                               source=source, world_seed=int(world), device=self.device, **extra)

    def get(self, model: str, orbit: int, source: str = "synthetic", world: int = 0) -> InferenceJob | None:
        return self.find_job("inference", (model, int(orbit), source, int(world)))

    def cancel(self, model: str, orbit: int, source: str = "synthetic", world: int = 0) -> bool:
        return self.cancel_job("inference", (model, int(orbit), source, int(world)))

    # -- inference on a real granule ----------------------------------------------------
    def submit_granule(self, model: str, granule: str, content: str, orbit: int, source: str) -> InferenceJob:
        """Start (or join) ``model`` on the real granule at ``granule`` (a path already confined to
        the data roots; ``content`` its sha256, the job's key with the model: the same file under
        two paths is one job; ``orbit`` and ``source`` (``pps-1C-GMI``) label it). The job runs
        :func:`models.granule_run.run_granule` in the inference lane, whatever this manager's runner."""
        return self.submit_job("inference", granule_key(model, content), model=model, orbit=int(orbit),
                               source=source, world_seed=0, device=self.device, granule=str(granule))

    def get_granule(self, model: str, content: str) -> InferenceJob | None:
        return self.find_job("inference", granule_key(model, content))

    def cancel_granule(self, model: str, content: str) -> bool:
        return self.cancel_job("inference", granule_key(model, content))

    # -- running a job -----------------------------------------------------------------
    def _run(self, lane: _Lane, job: Job) -> None:
        if job.cancel_event.is_set():
            job.status, job.message, job.finished = "cancelled", "cancelled", time.time()
            return
        job.status, job.message = "running", "starting"
        if lane.kind.mode == "process":
            self._run_in_worker(lane, job)
        else:
            self._run_in_thread(lane, job)

    def _finish(self, job: Job, result, info: dict) -> None:
        job.info.update(info)
        job.result = None if result is None else str(result)
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
            log.error("%s job %s failed: %s%s", job.kind, job.key, error, f"\n{detail}" if detail else "")

    def _progress(self, job: Job, done, total, message="") -> None:
        job.done, job.total = int(done), max(int(total), 1)
        job.message = str(message) if message else "running"

    def _run_in_thread(self, lane: _Lane, job: Job) -> None:
        if "device" in job.kwargs:
            job.device = inference_worker.device_label(job.kwargs["device"])
        job.info["pid"] = os.getpid()
        info: dict = {}
        try:
            result = lane.kind.fn(**job.kwargs, progress=lambda *a: self._progress(job, *a),
                                  cancel=job.cancel_event, info=info)
        except Exception as e:
            self._fail(job, f"{type(e).__name__}: {e}", cancelled=_is_cancellation(type(e).__name__),
                       detail=traceback.format_exc())
            return
        self._finish(job, result, info)

    def _run_in_worker(self, lane: _Lane, job: Job) -> None:
        w = lane.slots.get()
        try:
            if w is None or not w.alive():
                if w is not None:
                    self._forget(lane, w)
                job.message = f"starting the {lane.name} worker"
                try:
                    w = _Worker(self._ctx, lane.name, lane.kind.nice, lane.kind.torch_threads)
                except Exception as e:
                    w = None
                    self._fail(job, f"could not start a {lane.name} worker process: {type(e).__name__}: {e}")
                    return
                with self._lock:
                    if self._closed:
                        w.stop(0)
                        w = None
                        self._fail(job, "the job manager has been shut down", cancelled=True)
                        return
                    lane.workers.add(w)
            if job.cancel_event.is_set():
                self._fail(job, "cancelled", cancelled=True)
                return
            env = {k: v for k, v in os.environ.items() if k.startswith(inference_worker.ENV_PREFIX)}
            try:
                msg = pickle.dumps(("run", lane.kind.fn, job.kwargs, env))
            except Exception as e:
                self._fail(job, f"the job cannot be sent to a worker process: {type(e).__name__}: {e}")
                return
            with w.lock:
                w.cancel.clear()
                w.busy = True
                try:
                    w.conn.send_bytes(msg)
                except (OSError, ValueError):
                    pass  # a dead worker: found below
            try:
                self._relay(lane, job, w)
            finally:
                w.busy = False
        finally:
            lane.slots.put(w if w is not None and w.alive() else None)

    def _relay(self, lane: _Lane, job: Job, w: _Worker) -> None:
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
                self._forget(lane, w)
                self._fail(job, f"WorkerDied: the {lane.name} worker process (pid {w.proc.pid}) "
                                f"{_exit_reason(code)} while running this job; the server is fine "
                                "and the next job starts a fresh worker")
                return
            kind = msg[0]
            if kind == "started":
                job.device = msg[1] or job.device
                job.info["pid"] = msg[2]
                job.message = "running"
            elif kind == "progress":
                self._progress(job, *msg[1:])
            elif kind == "done":
                self._finish(job, msg[1], msg[2])
                return
            elif kind == "error":
                name, text, tb = msg[1:]
                self._fail(job, f"{name}: {text}", cancelled=_is_cancellation(name), detail=tb)
                return

    def _forget(self, lane: _Lane, w: _Worker) -> None:
        with self._lock:
            lane.workers.discard(w)
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


class KindJobs:
    """The face of one job kind (``KIND``) of a :class:`JobManager`: the jobs of that kind, waiting,
    the kind's worker processes and shutdown. Subclasses (box builds, comparisons) set ``KIND``,
    add the kind in ``__init__`` and add their own ``submit``/``get``. ``manager=None``: a manager
    of its own, stopped by :meth:`shutdown`; otherwise only this kind's jobs are cancelled."""

    KIND: str = ""

    def __init__(self, manager: JobManager | None = None):
        self._own = manager is None
        self.manager = manager or JobManager()

    @property
    def mode(self) -> str:
        return self.manager.kind(self.KIND).mode

    def jobs(self) -> list:
        return self.manager.jobs(self.KIND)

    def wait(self, job, timeout: float | None = None):
        return self.manager.wait(job, timeout)

    def worker_pids(self) -> list[int]:
        return self.manager.worker_pids(self.KIND)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Cancel this kind's jobs; stop the manager too when it is this face's own."""
        if self._own:
            self.manager.shutdown(timeout)
        else:
            self.manager._cancel_all(self.KIND)
