"""The inference worker process, spawned by :class:`app.jobs.JobManager` in process mode.

Kept apart from :mod:`app.jobs` so that a spawned worker imports only what inference needs
(no Panel/Bokeh). One worker runs one job at a time, reused from job to job (its loaded models,
torch and the simulator stay warm). It talks to its manager over a pipe:

- manager → worker: ``("run", runner, kwargs, env)`` (``runner`` is ``None`` for
  :func:`models.inference.run_inference`, else a pickled callable with its signature;
  ``env`` the caller's ``RAINCHECK_*`` variables), or ``None`` to stop;
- worker → manager: ``("started", device_label)``, any number of ``("progress", done, total,
  message)``, then ``("done", path, info)`` or ``("error", type_name, message, traceback)``.

Cancellation is a shared ``multiprocessing.Event`` handed to the runner as its ``cancel``.
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


def _plain(info: dict) -> dict:
    return {str(k): v for k, v in info.items() if isinstance(v, _PLAIN)}


def _apply_env(env: dict) -> None:
    for k in [k for k in os.environ if k.startswith(ENV_PREFIX) and k not in env]:
        del os.environ[k]
    os.environ.update(env)


def run_one(conn, cancel, runner, kwargs: dict, env: dict) -> None:
    """Run one job, reporting over ``conn``; exceptions are sent back, not raised (a broken
    pipe is: the manager is gone)."""
    _apply_env(env or {})
    conn.send(("started", device_label(kwargs.get("device", "auto"))))

    def progress(done, total, message=""):
        conn.send(("progress", int(done), int(total), str(message) if message else ""))

    info: dict = {}
    try:
        if runner is None:
            from models.inference import run_inference as runner
        elif isinstance(runner, bytes):
            runner = pickle.loads(runner)
        path = runner(kwargs["model"], kwargs["orbit"], source=kwargs["source"], world_seed=kwargs["world_seed"],
                      device=kwargs["device"], progress=progress, cancel=cancel, info=info)
    except (BrokenPipeError, EOFError):
        raise
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the manager
        conn.send(("error", type(e).__name__, str(e), traceback.format_exc()))
        return
    conn.send(("done", str(path), _plain(info)))


def main(conn, cancel, nice: int = 10, torch_threads: int | None = 1) -> None:
    """The worker's loop: run jobs from ``conn`` until told to stop or the manager goes away."""
    init(nice, torch_threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        _, runner, kwargs, env = msg
        try:
            run_one(conn, cancel, runner, kwargs, env)
        except (BrokenPipeError, EOFError, OSError):
            return
