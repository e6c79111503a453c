"""Background inference for the app: one worker pool shared by every session of the server.

- :class:`JobManager` runs :func:`models.inference.run_inference` in a thread pool, off the
  event loop, so the UI stays responsive (and other sessions too);
- identical requests (model, orbit, source, world seed) share one job (deduplicated);
- each job records progress (done/total/message), the device it runs on, and can be cancelled
  (a ``threading.Event`` handed to run_inference);
- results land in the catalogue's model-output store, so every view and every session sees them;
  a complete store is a cache hit and finishes at once.

:class:`RunControl` is the sidebar component: Run / Cancel per selected model, a progress bar,
the device, and a nudge to the views when an output lands (polled, also for jobs started by
another session).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import panel as pn
import param

from app import data
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


class JobManager:
    """Runs inference jobs in a shared thread pool; dedups identical requests."""

    def __init__(self, runner: Callable | None = None, max_workers: int = 1, device: str = "auto"):
        self._runner = runner
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="raincheck-infer")
        self._jobs: dict[tuple, Job] = {}
        self._lock = threading.Lock()
        self.device = device

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
            job = Job(model, int(orbit), source, int(world))
            self._jobs[key] = job
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

    def shutdown(self) -> None:
        for j in self.jobs():
            j.cancel_event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- worker ------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        if job.cancel_event.is_set():
            job.status, job.message, job.finished = "cancelled", "cancelled", time.time()
            return
        job.status, job.message = "running", "starting"
        job.device = _device_label(self.device)

        def progress(done, total, message=""):
            job.done, job.total = int(done), max(int(total), 1)
            job.message = str(message) if message else "running"

        info: dict = {}
        try:
            path = self.runner(job.model, job.orbit, source=job.source, world_seed=job.world,
                               device=self.device, progress=progress, cancel=job.cancel_event, info=info)
        except Exception as e:
            job.finished = time.time()
            cancelled = job.cancel_event.is_set() or type(e).__name__ == "InferenceCancelled"
            job.status = "cancelled" if cancelled else "failed"
            job.error = None if cancelled else f"{type(e).__name__}: {e}"
            job.message = job.status
            if not cancelled:
                log.exception("inference %s failed", job.key)
            return
        job.path = str(path)
        job.cache_hit = bool(info.get("cache_hit", False))
        if info.get("device"):
            job.device = info["device"]
        job.done, job.total = job.total, job.total
        job.status, job.message, job.finished = "done", "done", time.time()


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
