"""Shared plumbing of the evaluation views: the climatology cube, the selection as cube query
arguments, memoised reports, and a lazily-updating base component.

All statistics come from :mod:`evaluation` (``evaluation.report.evaluate`` / ``trends`` and the
cube's histograms through ``evaluation.distributions`` / ``evaluation.extremes``); the views
only draw them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import panel as pn
import param

from app import data
from app.state import Selection

log = logging.getLogger(__name__)

_cubes = data.Memo(4)
_reports = data.Memo(64)
#: bootstrap resamples for the GPD confidence bands: 20 on screen (answers in < 1 s), 200 in
#: exported figures (the manifest records which)
N_BOOT = 20
EXPORT_N_BOOT = 200

BUILD_HINT = "build one with `raincheck climatology build --demo` (or point the app at a cube with --cube)"


def cube_path(path: str | None = None) -> Path:
    from evaluation import cube as CB

    return Path(path) if path else CB.demo_cube_path()


def open_cube(path: str | None = None):
    """The climatology cube (memoised across sessions; reopened when rebuilt)."""
    from catalogs.store import IncompleteStore, is_complete, marker_path
    from evaluation import cube as CB

    p = cube_path(path)
    if not is_complete(p):
        raise data.DataError(f"no climatology cube at {p}: {BUILD_HINT}")
    try:
        key = (str(p), marker_path(p).stat().st_mtime)
        return _cubes.get(key, lambda: CB.open_cube(p))
    except (IncompleteStore, OSError, ValueError) as e:
        raise data.DataError(f"cannot open the climatology cube {p}: {e}") from e


def query(selection: Selection) -> dict:
    """Region, period and season of the selection as cube query arguments."""
    if selection.end_year < selection.start_year:
        raise data.DataError(f"the period ends ({selection.end_year}) before it starts ({selection.start_year})")
    return {"region": selection.region, "period": f"{selection.start_year}-{selection.end_year}",
            "season": None if selection.season == "annual" else selection.season}


def models_in(cube, selection: Selection) -> tuple[list[str], list[str]]:
    """(models of the selection that the cube holds, notes about the others)."""
    have = [m for m in selection.models if m in cube.models]
    notes = [f"model {m} is not in the climatology cube; add it with "
             f"`raincheck climatology build --sources {m}`" for m in selection.models if m not in cube.models]
    if not selection.models and cube.models:
        notes.append(f"select models to compare (the cube holds {', '.join(cube.models)})")
    return have, notes


def _expected():
    from evaluation.cube import RegionNotInCube

    return (data.DataError, RegionNotInCube, KeyError, ValueError)


def run_query(fn, *args, **kw):
    """Call an evaluation function, turning its errors into :class:`app.data.DataError`."""
    try:
        return fn(*args, **kw)
    except data.DataError:
        raise
    except _expected() as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise data.DataError(str(msg)) from e


def evaluate(cube, models, q: dict, *, extremes: bool, n_boot: int = N_BOOT):
    from evaluation import report

    key = (str(cube.path), tuple(models), q["region"], q["period"], q["season"], extremes, n_boot if extremes else 0)
    return _reports.get(key, lambda: run_query(report.evaluate, cube, models, q["region"], period=q["period"],
                                               season=q["season"], extremes=extremes, n_boot=n_boot))


def trends(cube, source: str, q: dict, *, freq: str, stats: tuple, strip: bool):
    from evaluation import report

    key = (str(cube.path), "trends", source, q["region"], q["period"], q["season"], freq, stats, strip)
    return _reports.get(key, lambda: run_query(report.trends, cube, source, q["region"], period=q["period"],
                                               season=q["season"], freq=freq, stats=stats, strip=strip))


def histogram(cube, source: str, q: dict) -> dict:
    return run_query(cube.histogram, source, q["region"], period=q["period"], season=q["season"])


def source_label(source: str) -> str:
    from evaluation import cube as CB

    if source == CB.TRUTH:
        return "truth (all pixels)"
    if source == CB.TRUTH_STRIP:
        return "truth (strip)"
    if source == CB.REFERENCE:
        return "reference (strip)"
    if source.endswith(CB.STRIP):
        return f"{source[:-len(CB.STRIP)]} (strip)"
    return f"{source} (all pixels)"


class EvaluationView(pn.viewable.Viewer):
    """Base: recomputes when the selection changes *and* the view is showing (else on showing)."""

    name_ = "view"
    selection = param.ClassSelector(class_=Selection)
    catalog_path = param.String(default=None, allow_None=True)
    cube_path = param.String(default=None, allow_None=True)
    _WATCH = ("region", "start_year", "end_year", "season", "models")

    def __init__(self, **params):
        super().__init__(**params)
        self._alerts = pn.Column(sizing_mode="stretch_width")
        self._body = pn.Column(sizing_mode="stretch_width")
        self._layout = pn.Column(self._alerts, self._body, sizing_mode="stretch_width", min_height=200)
        self._dirty = True
        self.result = None
        self.selection.param.watch(self._changed, list(self._WATCH))
        self.selection.param.watch(self._shown, "view")
        if self.selection.view == self.name_:
            self.update()

    def __panel__(self):
        return self._layout

    def _changed(self, *events):
        self._dirty = True
        if self.selection.view == self.name_:
            self.update()

    def _shown(self, event):
        if event.new == self.name_ and self._dirty:
            self.update()

    def alert(self, text, kind="warning"):
        return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width", margin=(2, 5))

    def compute(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def render(self, result: dict) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self):
        self._dirty = False
        try:
            self.result = self.compute()
            body = self.render(self.result)
        except data.DataError as e:
            self.result = None
            self._alerts.objects = [self.alert(str(e), "danger")]
            self._body.objects = []
            return
        except Exception as e:  # never a traceback in the UI
            log.exception("%s view failed", self.name_)
            self.result = None
            self._alerts.objects = [self.alert(f"the {self.name_} view failed: {type(e).__name__}: {e}", "danger")]
            self._body.objects = []
            return
        self._alerts.objects = [self.alert(n) for n in self.result.get("notes", [])]
        self._body.objects = body
