"""Box cubes on demand: when the selected region is a box the climatology cube does not hold,
the evaluation views offer "Compute this box" (:class:`BoxControl`), which builds the box's
*box cube* (:func:`evaluation.boxes.build_box_cube`) in the background.

The builds are jobs of kind ``"box"`` of the app's one job system (:mod:`app.jobengine`): by default
in a worker process of their own (one, at a CPU priority 5 below the inference workers', one
torch thread; not in the server, whose event loop they would starve, and never in the way of
inference jobs, which have their own workers), inline (no dask cluster per click).

- :class:`BoxJobManager` is the box-cube face of a :class:`app.jobengine.JobManager`: requests for
  the same box (the same box cube) share one job; each job records progress and can be
  cancelled (finished orbits are kept, so Compute resumes);
- :class:`BoxControl` is the button, progress bar, text and Cancel shown in a view; it polls the
  job (also one started by another session) and tells the view when the box cube is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import panel as pn
import param

from app import inference_worker
from app.jobengine import Job, JobManager, Kind, KindJobs, get_manager, sendable
from app.jobs import JobRow, Polling

log = logging.getLogger(__name__)

KIND = "box"
#: how much lower a box build's CPU priority is than the inference workers'
NICE_BELOW_INFERENCE = 5


class BoxJob(Job):
    """Building the box cube of one box (``evaluation.boxes.build_box_cube``) in the background."""

    plan = property(lambda self: self.kwargs["plan"])
    spec = property(lambda self: self.kwargs["plan"]["spec"])
    path = property(lambda self: self.key)

    @property
    def label(self) -> str:
        return self.spec

    def done_text(self) -> str:
        return "box cube ready"

    def cancelled_text(self) -> str:
        return "cancelled (finished orbits are kept: Compute resumes)"

    def progress_text(self) -> str:
        return f"{self.message} ({self.done} of {self.total} orbit steps, {100 * self.fraction:.0f} %)"


class BoxJobManager(KindJobs):
    """Builds box cubes as ``"box"`` jobs of ``manager`` (default: a job manager of its own;
    :func:`get_box_manager` uses the server-wide one); requests for the same box (same box cube)
    share one job. ``builder`` defaults to ``build_box_cube`` run inline (no dask cluster per
    click); ``model_fns`` as in ``build_cube`` (models computed by callables).

    ``mode`` (the box lane's, when this sets it up): ``"process"`` (the default without a
    ``builder``: ``max_workers`` worker processes at ``nice`` (default: the manager's + 5), so
    ``builder`` and ``model_fns`` must be module-level functions) or ``"thread"`` (the default
    with a ``builder``: any callable, in threads of the server)."""

    KIND = KIND

    def __init__(self, builder: Callable | None = None, max_workers: int = 1, model_fns: dict | None = None,
                 scheduler="inline", *, manager: JobManager | None = None, mode: str | None = None,
                 nice: int | None = None):
        super().__init__(manager)
        mode = mode or ("thread" if builder is not None else self.manager.mode if manager is not None else "process")
        self.builder = builder
        self.model_fns = dict(model_fns or {})
        self.scheduler = scheduler
        if mode == "process":
            sendable(builder, "builder")
            sendable(self.model_fns, "model_fns")
        nice = self.manager.nice + NICE_BELOW_INFERENCE if nice is None else nice
        self.manager.add_kind(KIND, Kind(inference_worker.build_box, mode, int(max_workers), min(int(nice), 19),
                                         self.manager.torch_threads, BoxJob))

    def submit(self, plan: dict) -> BoxJob:
        """Start (or join) the build of the box cube ``plan`` describes (``box_plan``)."""
        extra = {"builder": self.builder} if self.builder is not None else {}
        return self.manager.submit_job(KIND, str(plan["path"]), plan=plan, scheduler=self.scheduler,
                                       model_fns=self.model_fns, **extra)

    def get(self, path) -> BoxJob | None:
        return self.manager.find_job(KIND, str(path))

    def cancel(self, path) -> bool:
        return self.manager.cancel_job(KIND, str(path))



_BOX_MANAGER: BoxJobManager | None = None
_BOX_LOCK = threading.Lock()


def get_box_manager() -> BoxJobManager:
    """The server-wide box-cube job manager (shared by every session): box jobs of the
    server-wide job manager (:func:`app.jobengine.get_manager`)."""
    global _BOX_MANAGER
    with _BOX_LOCK:
        if _BOX_MANAGER is None or (not _BOX_MANAGER._own and _BOX_MANAGER.manager is not get_manager()):
            _BOX_MANAGER = BoxJobManager(manager=get_manager())
        return _BOX_MANAGER


def set_box_manager(manager: BoxJobManager | None) -> None:
    global _BOX_MANAGER
    with _BOX_LOCK:
        _BOX_MANAGER = manager


def plan_label(plan: dict) -> str:
    """'N orbits, about T' for the Compute button."""
    from evaluation.boxes import fmt_seconds

    secs = plan["seconds"] + 3.0 * len(plan["groups"])  # + writing the cube after each group
    return f"{plan['orbits']} orbit{'s' if plan['orbits'] != 1 else ''}, about {fmt_seconds(secs)}"


class BoxControl(Polling, pn.viewable.Viewer):
    """'Compute this box' for a box the climatology cube does not hold: starts (or joins) the
    shared background build, shows its progress, lets it be cancelled, and calls ``on_done``
    when the box cube is ready (polled; also when another session started the build)."""

    poll_ms = param.Integer(default=500)

    def __init__(self, plan: dict, manager: BoxJobManager | None = None, on_done: Callable | None = None, **params):
        super().__init__(**params)
        self.plan = plan
        self.manager = manager or get_box_manager()
        self.on_done = on_done
        self.row = JobRow(f"Compute this box ({plan_label(plan)})", self.run, self.cancel, width=360,
                          css="rc-compute-box", cancel_css=("rc-cancel-box",), text_css=("rc-box-progress",))
        self.button, self.cancel_button, self.bar, self.text = self.row
        self._cb = None
        self._fired = False
        self._created = time.time()
        self.poll()
        self._start_polling()  # also sees a build another session starts

    def close(self) -> None:
        """Stop polling (the view no longer shows this control)."""
        self.on_done = None
        self._stop_polling()

    def __panel__(self):
        return self.row

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

    def poll(self) -> None:
        job = self.job
        if job is not None and job.status == "done" and (job.finished or 0) < self._created:
            job = None  # an earlier build of this box (the plan has grown since): Compute again
        self.row.show(job)
        if job is None:
            return
        if job.active:
            self._start_polling()
            return
        if job.status == "done" and not self._fired:
            self._stop_polling()
            self._fired = True
            if self.on_done is not None:
                self.on_done()
