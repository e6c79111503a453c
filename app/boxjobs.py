"""Box cubes on demand: when the selected region is a box the climatology cube does not hold,
the evaluation views offer "Compute this box" (:class:`BoxControl`), which builds the box's
*box cube* (:func:`evaluation.cube.build_box_cube`) in the background.

- :class:`BoxJobManager` runs the builds in one thread shared by every session of the server
  (inline, no dask cluster per click), so the UI stays responsive; requests for the same box
  (the same box cube) share one job; each job records progress and can be cancelled (a
  ``threading.Event`` handed to the build; finished orbits are kept, so Compute resumes).
- :class:`BoxControl` is the button, progress bar, text and Cancel shown in a view; it polls the
  job (also one started by another session) and tells the view when the box cube is ready.
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

log = logging.getLogger(__name__)


@dataclass
class BoxJob:
    """Building the box cube of one box (``evaluation.cube.build_box_cube``) in the background."""

    spec: str
    path: str
    plan: dict = field(repr=False, default_factory=dict)
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 1
    message: str = "queued"
    error: str | None = None
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    future: object = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return self.path

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else max(0.0, min(1.0, self.done / self.total))

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def describe(self) -> str:
        if self.status == "done":
            return f"{self.spec}: box cube ready"
        if self.status == "failed":
            return f"{self.spec}: failed: {self.error}"
        if self.status == "cancelled":
            return f"{self.spec}: cancelled (finished orbits are kept: Compute resumes)"
        return f"{self.spec}: {self.message} ({self.done} of {self.total} orbit steps, {100 * self.fraction:.0f} %)"


class BoxJobManager:
    """Builds box cubes in one background thread shared by every session; requests for the same
    box (same box cube) share one job. ``builder`` defaults to ``build_box_cube`` run inline (no
    dask cluster per click); ``model_fns`` as in ``build_cube`` (models computed by callables)."""

    def __init__(self, builder: Callable | None = None, max_workers: int = 1, model_fns: dict | None = None,
                 scheduler="inline"):
        self._builder = builder
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="raincheck-box")
        self._jobs: dict[str, BoxJob] = {}
        self._lock = threading.Lock()
        self.model_fns = dict(model_fns or {})
        self.scheduler = scheduler
        # at interpreter exit, cancel running builds (they stop after the orbit in progress and
        # resume later) instead of the exit waiting for them to finish
        try:
            threading._register_atexit(self._cancel_all)
        except (AttributeError, RuntimeError):  # pragma: no cover - other Pythons / already exiting
            pass

    def _cancel_all(self) -> None:
        for j in self.jobs():
            j.cancel_event.set()

    @property
    def builder(self) -> Callable:
        if self._builder is not None:
            return self._builder
        from evaluation.cube import build_box_cube

        return build_box_cube

    def submit(self, plan: dict) -> BoxJob:
        """Start (or join) the build of the box cube ``plan`` describes (``box_plan``)."""
        key = str(plan["path"])
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.active:
                return job
            job = BoxJob(plan["spec"], key, plan)
            self._jobs[key] = job
            job.future = self._pool.submit(self._run, job)
        return job

    def get(self, path) -> BoxJob | None:
        with self._lock:
            return self._jobs.get(str(path))

    def jobs(self) -> list[BoxJob]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, path) -> bool:
        job = self.get(path)
        if job is None or not job.active:
            return False
        job.cancel_event.set()
        job.message = "cancelling"
        return True

    def wait(self, job: BoxJob, timeout: float | None = None) -> BoxJob:
        if job.future is not None:
            try:
                job.future.result(timeout=timeout)
            except Exception:  # recorded on the job
                pass
        return job

    def shutdown(self) -> None:
        self._cancel_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: BoxJob) -> None:
        if job.cancel_event.is_set():
            job.status, job.message, job.finished = "cancelled", "cancelled", time.time()
            return
        job.status, job.message = "running", "starting"

        def progress(done, total, message=""):
            job.done, job.total = int(done), max(int(total), 1)
            job.message = str(message) if message else "running"

        try:
            self.builder(job.spec, job.plan.get("main_cube"), plan=job.plan, progress=progress,
                         cancel=job.cancel_event, scheduler=self.scheduler, model_fns=self.model_fns)
        except Exception as e:
            job.finished = time.time()
            cancelled = job.cancel_event.is_set() or type(e).__name__ == "BuildCancelled"
            job.status = "cancelled" if cancelled else "failed"
            job.error = None if cancelled else f"{type(e).__name__}: {e}"
            job.message = job.status
            if not cancelled:
                log.exception("box cube %s failed", job.spec)
            return
        job.done = job.total
        job.status, job.message, job.finished = "done", "done", time.time()


_BOX_MANAGER: BoxJobManager | None = None
_BOX_LOCK = threading.Lock()


def get_box_manager() -> BoxJobManager:
    """The server-wide box-cube job manager (shared by every session)."""
    global _BOX_MANAGER
    with _BOX_LOCK:
        if _BOX_MANAGER is None:
            _BOX_MANAGER = BoxJobManager()
        return _BOX_MANAGER


def set_box_manager(manager: BoxJobManager | None) -> None:
    global _BOX_MANAGER
    with _BOX_LOCK:
        _BOX_MANAGER = manager


def plan_label(plan: dict) -> str:
    """'N orbits, about T' for the Compute button."""
    from evaluation.cube import fmt_seconds

    secs = plan["seconds"] + 3.0 * len(plan["groups"])  # + writing the cube after each group
    return f"{plan['orbits']} orbit{'s' if plan['orbits'] != 1 else ''}, about {fmt_seconds(secs)}"


class BoxControl(pn.viewable.Viewer):
    """'Compute this box' for a box the climatology cube does not hold: starts (or joins) the
    shared background build, shows its progress, lets it be cancelled, and calls ``on_done``
    when the box cube is ready (polled; also when another session started the build)."""

    poll_ms = param.Integer(default=500)

    def __init__(self, plan: dict, manager: BoxJobManager | None = None, on_done: Callable | None = None, **params):
        super().__init__(**params)
        self.plan = plan
        self.manager = manager or get_box_manager()
        self.on_done = on_done
        self.button = pn.widgets.Button(label=f"Compute this box ({plan_label(plan)})", color="primary",
                                        css_classes=["rc-compute-box"], width=360)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="warning", width=80, disabled=True,
                                               css_classes=["rc-cancel-box"])
        self.bar = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width", visible=False, height=12)
        self.text = pn.pane.Markdown("", sizing_mode="stretch_width", styles={"font-size": "12px"}, margin=(0, 5),
                                     css_classes=["rc-box-progress"])
        self.button.on_click(lambda e: self.run())
        self.cancel_button.on_click(lambda e: self.cancel())
        self._cb = None
        self._fired = False
        self._created = time.time()
        self._layout = pn.Column(pn.Row(self.button, self.cancel_button), self.bar, self.text,
                                 sizing_mode="stretch_width")
        self.poll()
        self._start_polling()  # also sees a build another session starts

    def close(self) -> None:
        """Stop polling (the view no longer shows this control)."""
        self.on_done = None
        self._stop_polling()

    def __panel__(self):
        return self._layout

    @property
    def job(self) -> BoxJob | None:
        return self.manager.get(self.plan["path"])

    def run(self) -> BoxJob:
        job = self.manager.submit(self.plan)
        self.poll()
        return job

    def cancel(self) -> None:
        self.manager.cancel(self.plan["path"])
        self.poll()

    def _start_polling(self):
        if self._cb is None and pn.state.curdoc is not None:
            try:
                self._cb = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)
            except Exception as e:  # no session (tests, exports): poll() is called by hand
                log.debug("no periodic callback: %s", e)

    def _stop_polling(self):
        if self._cb is not None:
            self._cb.stop()
            self._cb = None

    def poll(self) -> None:
        job = self.job
        if job is not None and job.status == "done" and (job.finished or 0) < self._created:
            job = None  # an earlier build of this box (the plan has grown since): Compute again
        if job is None:
            self.bar.visible = False
            self.button.disabled = False
            self.cancel_button.disabled = True
            self.text.object = ""
            return
        self.bar.visible = job.active
        self.bar.value = int(round(100 * job.fraction))
        self.button.disabled = job.active
        self.cancel_button.disabled = not job.active
        self.text.object = job.describe()
        if job.active:
            self._start_polling()
            return
        if job.status == "done" and not self._fired:
            self._stop_polling()
            self._fired = True
            if self.on_done is not None:
                self.on_done()
