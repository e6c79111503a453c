"""The worker process of :class:`app.jobs.JobManager` in process mode, and the job functions
it runs (:func:`infer`: inference on one orbit; :func:`build_box`: a box cube).

Kept apart from :mod:`app.jobs` so that a spawned worker imports only what its jobs need (no
Panel/Bokeh). One worker runs one job at a time, reused from job to job of its kind (its loaded
models, torch and the simulator stay warm). It talks to its manager over a pipe (pickled
messages, sent as bytes):

- manager → worker: ``("run", fn, kwargs, env)`` (``fn`` a module-level function, called as
  ``fn(**kwargs, progress=, cancel=, info=)``; ``env`` the caller's ``RAINCHECK_*`` variables),
  or ``None`` to stop;
- worker → manager: ``("started", device_label, pid)``, any number of ``("progress", done,
  total, message)``, then ``("done", result, info)`` or ``("error", type_name, message,
  traceback)`` (also for a job it cannot unpickle).

Cancellation is a shared ``multiprocessing.Event`` handed to the function as its ``cancel``.
The worker runs at a lower CPU priority (``os.nice``) and, by default, with one torch intra-op
thread, so the server's event loop gets the CPU first when users interact.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback

ENV_PREFIX = "RAINCHECK_"
_PLAIN = (str, int, float, bool, type(None))


def init(nice: int = 10, torch_threads: int | None = 1) -> None:
    """Lower this process's CPU priority and limit torch's intra-op threads."""
    # Ctrl-C in a terminal reaches the whole process group; the server stops its workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        try:
            os.nice(int(nice))
        except OSError:  # pragma: no cover - not permitted here: run at the normal priority
            pass
    if torch_threads:
        n = str(int(torch_threads))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = n
        import torch

        torch.set_num_threads(int(torch_threads))
        try:
            torch.set_num_interop_threads(int(torch_threads))
        except RuntimeError:  # pragma: no cover - already set
            pass


def device_label(pref: str) -> str | None:
    try:
        from models.inference import choose_device, device_name

        return device_name(choose_device(pref))
    except Exception:  # device problems surface when the job runs
        return None


# -- the job functions (module-level: sent to workers by reference) ----------------------
def infer(model, orbit, source="synthetic", world_seed=0, device="auto", *, granule=None, runner=None, progress=None,
          cancel=None, info=None):
    """An inference job: ``runner`` (default :func:`models.run.run_inference`) on one orbit, or,
    with ``granule`` (a path), :func:`models.granule_run.run_granule` on that real granule (the
    function ``raincheck infer --granule`` uses: same store, same checks, plus the OOD score)."""
    if granule is not None:
        from models.granule_run import run_granule

        return run_granule(model, granule, device=device, progress=progress, cancel=cancel, info=info)
    if runner is None:
        from models.run import run_inference as runner
    return runner(model, orbit, source=source, world_seed=world_seed, device=device, progress=progress,
                  cancel=cancel, info=info)


def build_box(plan, *, builder=None, scheduler="inline", model_fns=None, progress=None, cancel=None, info=None):
    """A box-cube job: ``builder`` (default :func:`evaluation.boxes.build_box_cube`) for ``plan``
    (:func:`evaluation.boxes.box_plan`)."""
    if builder is None:
        from evaluation.boxes import build_box_cube as builder
    return builder(plan["spec"], plan.get("main_cube"), plan=plan, progress=progress, cancel=cancel,
                   scheduler=scheduler, model_fns=model_fns)


# -- the worker --------------------------------------------------------------------------
def _plain(info: dict) -> dict:
    return {str(k): v for k, v in info.items() if isinstance(v, _PLAIN)}


def _apply_env(env: dict) -> None:
    for k in [k for k in os.environ if k.startswith(ENV_PREFIX) and k not in env]:
        del os.environ[k]
    os.environ.update(env)


def _error(conn, e: BaseException) -> None:
    conn.send(("error", type(e).__name__, str(e), traceback.format_exc()))


def run_one(conn, cancel, fn, kwargs: dict, env: dict) -> None:
    """Run one job, reporting over ``conn``; exceptions are sent back, not raised (a broken
    pipe is: the manager is gone)."""
    _apply_env(env or {})
    conn.send(("started", device_label(kwargs["device"]) if "device" in kwargs else None, os.getpid()))

    def progress(done, total, message=""):
        conn.send(("progress", int(done), int(total), str(message) if message else ""))

    info: dict = {}
    try:
        result = fn(**kwargs, progress=progress, cancel=cancel, info=info)
    except (BrokenPipeError, EOFError):
        raise
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the manager
        _error(conn, e)
        return
    conn.send(("done", None if result is None else str(result), _plain(info)))


def warm(models=()) -> None:
    """Get ready for the first job: import torch, the models and the simulator, load ``models``
    (their checkpoints) and run each once on a small tile, so that a user's first Run does not
    wait for any of it. Problems are left for the job to report."""
    try:
        import torch

        from models.run import load_swath  # noqa: F401  (the simulator comes with it)
        from models.registry import load_model
        import catalogs.simulator  # noqa: F401
        from catalogs.schema import N_CHANNELS
    except Exception:  # noqa: BLE001 - the job says what is wrong
        return
    for name in models:
        try:
            r = load_model(name)
            m = max(int(getattr(r, "multiple", 1) or 1), 1)
            n = -(-64 // m) * m
            with torch.inference_mode():
                r.predict_batch(torch.zeros((1, N_CHANNELS, n, n)))
        except Exception:  # noqa: BLE001 - a model that cannot load fails its own job, with its message
            continue


def main(conn, cancel, nice: int = 10, torch_threads: int | None = 1, warm_models=None) -> None:
    """The worker's loop: run jobs from ``conn`` until told to stop or the manager goes away.
    ``warm_models`` (a list, maybe empty): :func:`warm` up first (the first job's message waits
    in the pipe meanwhile)."""
    init(nice, torch_threads)
    if warm_models is not None:
        warm(warm_models)
    while True:
        try:
            buf = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            try:
                msg = pickle.loads(buf)
            except Exception as e:  # noqa: BLE001 - e.g. a function this process cannot import
                _error(conn, e)
                continue
            if msg is None:
                return
            _, fn, kwargs, env = msg
            run_one(conn, cancel, fn, kwargs, env)
        except (BrokenPipeError, EOFError, OSError):
            return
