"""The widgets of the app's background jobs: :class:`JobRow` (the button, Cancel, progress bar
and text of one job, shown by :class:`RunControl`, :class:`app.boxjobs.BoxControl` and the
comparison view) and :class:`RunControl` (the sidebar's Run / Cancel per selected model, a
progress bar, the device, and a nudge to the views when an output lands; polled, also for jobs
started by another session).

The engine they show (:class:`Job`, :class:`Kind`, :class:`JobManager`, the worker processes,
lanes, cancel and dedup) is :mod:`app.jobengine`, which imports no Panel; its public names are
re-exported here, so ``from app.jobs import JobManager, get_manager, ...`` keeps working.
"""

from __future__ import annotations

import logging

from typing import Callable

import panel as pn
import param

from app import data
from app.jobengine import (
    ACTIVE,
    MODES,
    InferenceJob,
    Job,
    JobManager,
    Kind,
    get_manager,
    sendable,
    set_manager,
)
from app.state import Selection

__all__ = ["ACTIVE", "MODES", "InferenceJob", "Job", "JobManager", "JobRow", "Kind", "RunControl", "get_manager",
           "sendable", "set_manager"]


class Polling:
    """Poll a job while it runs: ``self.poll`` every ``self.poll_ms`` ms through a periodic callback
    of the session (none outside a session: tests and exports call ``poll()`` by hand). The using
    class sets ``_cb = None`` and ``poll_ms``."""

    def _start_polling(self):
        if self._cb is None and pn.state.curdoc is not None:
            try:
                self._cb = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)
            except Exception as e:  # no session (tests, exports): poll() is called by hand
                logging.getLogger(__name__).debug("no periodic callback: %s", e)

    def _stop_polling(self):
        if self._cb is not None:
            self._cb.stop()
            self._cb = None


class JobRow(pn.viewable.Viewer):
    """One job's controls: a start button, Cancel, a progress bar and a line of text, drawn from
    the job's record by :meth:`show`. Iterates as (button, cancel button, bar, text)."""

    def __init__(self, label: str, on_run: Callable, on_cancel: Callable, *, width: int | None = None,
                 css: str = "rc-run", cancel_css: tuple = (), text_css: tuple = (), margin=None, **params):
        super().__init__(**params)
        size = {"width": width} if width else {"sizing_mode": "stretch_width"}
        self.button = pn.widgets.Button(label=label, color="primary", css_classes=[css], **size)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="warning", width=80, disabled=True,
                                               css_classes=list(cancel_css))
        self.bar = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width", visible=False, height=12)
        self.text = pn.pane.Markdown("", sizing_mode="stretch_width", styles={"font-size": "12px"}, margin=(0, 5),
                                     css_classes=list(text_css))
        self.button.on_click(lambda e: on_run())
        self.cancel_button.on_click(lambda e: on_cancel())
        self._layout = pn.Column(pn.Row(self.button, self.cancel_button, sizing_mode="stretch_width"), self.bar,
                                 self.text, sizing_mode="stretch_width", **({"margin": margin} if margin else {}))

    def __panel__(self):
        return self._layout

    def __iter__(self):
        return iter((self.button, self.cancel_button, self.bar, self.text))

    def show(self, job: Job | None, idle: str = "") -> None:
        """Show ``job`` (``None``: no job, ``idle`` as the text)."""
        active = job is not None and job.active
        self.bar.visible = active
        self.bar.value = int(round(100 * job.fraction)) if job is not None else 0
        self.button.disabled = active
        self.cancel_button.disabled = not active
        self.text.object = data.for_page(job.describe()) if job is not None else idle


class RunControl(pn.viewable.Viewer):
    """Run / Cancel inference for each selected model on the current orbit, or on the chosen real
    granule (1C-GMI: its job and output are keyed by the file's content, stored where
    ``raincheck infer --granule`` stores them), with progress."""

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
        self.granule: data.RealGranule | None = None
        selection.param.watch(lambda e: self._rebuild(), ["models", "orbit", "world", "source", "granule"])
        self._rebuild()

    def __panel__(self):
        return self._rows

    def start_polling(self):
        if self._cb is None and pn.state.curdoc is not None:
            self._cb = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    def _real(self) -> bool:
        return self.selection.source == "real"

    def _job(self, model):
        s = self.selection
        if self._real():
            return self.manager.get_granule(model, self.granule.content) if self.granule is not None else None
        return self.manager.get(model, s.orbit, "synthetic", s.world)

    def _note(self, text: str) -> pn.pane.Markdown:
        return pn.pane.Markdown(f"_{data.for_page(text)}_", sizing_mode="stretch_width", css_classes=["rc-run-note"])

    def _rebuild(self):
        s = self.selection
        self._controls: dict[str, JobRow] = {}
        rows = []
        self.granule = None
        if self._real():
            try:
                self.granule = data.real_granule(s.granule)
            except data.DataError as e:
                rows.append(self._note(str(e)))
        if self._real() and self.granule is None:
            pass  # the reason is the only row
        elif not s.models:
            rows.append(self._note(f"Select a model to run it on this {'granule' if self._real() else 'orbit'}."))
        else:
            for m in s.models:
                row = JobRow(f"Run {m}", lambda m=m: self.run(m), lambda m=m: self.cancel(m), margin=(0, 0, 6, 0))
                self._controls[m] = row
                rows.append(row)
        self._widgets = {m: tuple(row) for m, row in self._controls.items()}
        self._rows.objects = rows
        if self.granule is not None:
            self._stored = {m: data.granule_output_stored(m, self.granule) for m in self._controls}
        else:
            self._stored = {m: data.output_stored(m, s.orbit, s.world) for m in self._controls}
        self.poll()

    def run(self, model):
        s = self.selection
        if self._real():
            g = self.granule
            if g is None:
                return None
            job = self.manager.submit_granule(model, str(g.path), g.content, g.orbit, g.source)
        else:
            job = self.manager.submit(model, s.orbit, "synthetic", s.world)
        self._seen[job.key] = job.status
        self.start_polling()
        self.poll()
        return job

    def cancel(self, model):
        s = self.selection
        if self._real():
            if self.granule is not None:
                self.manager.cancel_granule(model, self.granule.content)
        else:
            self.manager.cancel(model, s.orbit, "synthetic", s.world)
        self.poll()

    def _where(self) -> str:
        return f"{self.granule.filename}" if self.granule is not None else f"orbit {self.selection.orbit}"

    def poll(self):
        """Copy job states into the widgets; fire ``landed`` when an output appears."""
        landed = False
        for m, row in getattr(self, "_controls", {}).items():
            job = self._job(m)
            if job is None:
                row.show(None, data.for_page(f"{m} · {self._where()}: output in the store (Run is a cache hit)")
                         if getattr(self, "_stored", {}).get(m) else "")
                continue
            prev = self._seen.get(job.key)
            self._seen[job.key] = job.status
            if job.status == "done" and prev is not None and prev != "done":
                landed = True
            row.show(job)
        if landed:
            self.landed = True
