"""The model comparison as a job: kind ``"compare"`` of the app's one job system
(:mod:`app.jobengine`), so the minutes of CPU of :func:`evaluation.compare.compare` run in a worker
process of their own (one, at a CPU priority below the inference workers', like box-cube builds),
never on a server thread, with progress, Cancel, and one computation per request.

- A *request* is the models (the reference first, then the others sorted: the order they were
  picked in does not matter), their checkpoint hashes (a retrained model is a new request), the
  comparison's settings (:data:`DEFAULTS`) and where the result goes. Requests with the same key
  from any session share one job (:meth:`ComparisonJobs.submit`) and every session polling it sees
  its result.
- The job (:func:`run_comparison`) writes its result where the comparison view and
  ``raincheck export --view compare`` read it (:func:`evaluation.compare.save_result`, atomic,
  default ``<data_root>/comparison/compare.json``) and returns that path; the models' scores go
  through the comparison's per-model cache as in ``raincheck compare``. A cancelled comparison
  writes no result (the scores of the models it finished stay cached, so a rerun resumes).

Nothing here imports Panel: the view (:class:`app.views.compare.CompareView`) shows the job with a
:class:`app.jobs.JobRow`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from app.jobengine import Job, JobManager, Kind, KindJobs, get_manager, sendable
from evaluation.compare import ComparisonCancelled, compare, save_result, default_result_path

KIND = "compare"
#: how much lower a comparison's CPU priority is than the inference workers' (it takes minutes; a
#: user waiting for one orbit should not wait for it), as for box-cube builds
NICE_BELOW_INFERENCE = 5
#: the settings of a comparison request (keyword arguments of :func:`evaluation.compare.compare`)
#: and their defaults, the same as ``raincheck compare``'s
DEFAULTS = {"config": "unet-reference", "reference": "unet-reference", "draws": 4, "n_boot": 100, "ood": True,
            "seed": 0, "cache": True}


class ComparisonJob(Job):
    """One run of :func:`evaluation.compare.compare` in the background."""

    names = property(lambda self: list(self.kwargs["names"]))
    settings = property(lambda self: dict(self.kwargs["settings"]))
    path = property(lambda self: self.result)

    @property
    def label(self) -> str:
        return "comparison of " + ", ".join(self.names)

    def done_text(self) -> str:
        return "comparison stored"

    def cancelled_text(self) -> str:
        return "cancelled (no result written; the models already scored are cached, so Run resumes)"


def run_comparison(names, *, settings: dict, result_path: str, compare_fn: Callable | None = None, progress=None,
                   cancel=None, info=None) -> str:
    """The comparison job: ``compare_fn`` (default :func:`evaluation.compare.compare`) of
    ``names`` with ``settings``, stored JSON-clean at ``result_path`` (atomically); returns the
    path. A cancellation (:class:`evaluation.compare.ComparisonCancelled`) writes nothing."""
    from evaluation.report import clean

    fn = compare if compare_fn is None else compare_fn
    res = clean(fn(list(names), **settings, progress=progress, cancel=cancel))
    if cancel is not None and cancel.is_set():  # cancelled after the comparison's last check
        raise ComparisonCancelled("comparison cancelled; no result was written")
    path = save_result(res, result_path)
    if info is not None:
        info.update(models=len(res.get("models") or {}), seconds=res.get("seconds"),
                    met_by=",".join((res.get("goal") or {}).get("met_by") or []))
    return str(path)


def normalise(names, settings: dict | None = None) -> tuple[list[str], dict]:
    """(the request's model names: the reference first, then the others sorted, each once; its
    full settings). ValueError naming an unknown setting."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown comparison setting(s) {', '.join(unknown)}; use {', '.join(DEFAULTS)}")
    full = {**DEFAULTS, **settings}
    ref = str(full["reference"])
    names = [str(n) for n in names]
    return [ref] + sorted(set(names) - {ref}), full


def request_key(names: list[str], settings: dict, result_path) -> tuple:
    """The dedup key of a (normalised) request: model names, their checkpoint hashes, settings
    and result path. :class:`models.errors.ModelError` for a model that is not registered."""
    from models.registry import get_card

    hashes = tuple(get_card(n).checkpoint_sha256 for n in names)
    return (tuple(names), hashes, json.dumps(settings, sort_keys=True, default=str), str(result_path))


class ComparisonJobs(KindJobs):
    """Runs comparisons as ``"compare"`` jobs of ``manager`` (default: a job manager of its own;
    :func:`get_comparison_jobs` uses the server-wide one); the same request shares one job.

    ``mode`` (the lane's, when this sets it up): ``"process"`` (the default without a
    ``compare_fn``: one worker process at ``nice``, default the manager's + 5) or ``"thread"``
    (the default with a ``compare_fn``: any callable with :func:`evaluation.compare.compare`'s
    signature, in a thread of the server)."""

    KIND = KIND

    def __init__(self, manager: JobManager | None = None, *, compare_fn: Callable | None = None,
                 mode: str | None = None, nice: int | None = None):
        super().__init__(manager)
        mode = mode or ("thread" if compare_fn is not None else self.manager.mode if manager is not None
                        else "process")
        if mode == "process":
            sendable(compare_fn, "compare_fn")
        self.compare_fn = compare_fn
        nice = self.manager.nice + NICE_BELOW_INFERENCE if nice is None else nice
        self.manager.add_kind(KIND, Kind(run_comparison, mode, 1, min(int(nice), 19), self.manager.torch_threads,
                                         ComparisonJob))

    def _request(self, names, settings: dict, result_path=None):
        names, full = normalise(names, settings)
        path = Path(result_path) if result_path is not None else default_result_path()
        return names, full, path, request_key(names, full, path)

    def submit(self, names, *, result_path=None, **settings) -> ComparisonJob:
        """Start (or join) the comparison of ``names`` with ``settings`` (see :data:`DEFAULTS`)."""
        names, full, path, key = self._request(names, settings, result_path)
        extra = {"compare_fn": self.compare_fn} if self.compare_fn is not None else {}
        return self.manager.submit_job(KIND, key, names=names, settings=full, result_path=str(path), **extra)

    def get(self, names, *, result_path=None, **settings) -> ComparisonJob | None:
        """The job of that request (running or finished), if any."""
        return self.manager.find_job(KIND, self._request(names, settings, result_path)[3])

    def cancel(self, job: ComparisonJob) -> bool:
        """Cancel ``job`` (for every session that shares it)."""
        return self.manager.cancel_job(KIND, job.key)

    def active(self) -> list[ComparisonJob]:
        """The queued and running comparisons, oldest first."""
        return sorted((j for j in self.jobs() if j.active), key=lambda j: j.submitted)



_JOBS: ComparisonJobs | None = None
_LOCK = threading.Lock()


def get_comparison_jobs() -> ComparisonJobs:
    """The server-wide comparisons (shared by every session): ``"compare"`` jobs of the
    server-wide job manager (:func:`app.jobengine.get_manager`)."""
    global _JOBS
    with _LOCK:
        if _JOBS is None or (not _JOBS._own and _JOBS.manager is not get_manager()):
            _JOBS = ComparisonJobs(manager=get_manager())
        return _JOBS


def set_comparison_jobs(jobs: ComparisonJobs | None) -> None:
    """Replace the server-wide comparisons (tests, or a server with another ``compare_fn``)."""
    global _JOBS
    with _LOCK:
        _JOBS = jobs
