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
from evaluation.results import BoxPlan, CubeQuery, EvaluationReport, Histogram
from catalogs.store import IncompleteStore, is_complete, marker_path
from app.boxjobs import BoxControl, get_box_manager, plan_label
from evaluation import regions as RG
import os

log = logging.getLogger(__name__)

_cubes = data.Memo(4)
_reports = data.Memo(64)
#: each view's answer per (view, selection, cube), shared by every session of the server: the
#: second session asking the same question gets the first one's answer (``RAINCHECK_VIEW_CACHE=0``
#: turns it off, for the load benchmark's baseline)
_answers = data.Memo(256)
#: bootstrap resamples for the GPD confidence bands: 20 on screen (answers in < 1 s), 200 in
#: exported figures (the manifest records which)
N_BOOT = 20
EXPORT_N_BOOT = 200

BUILD_HINT = "build one with `raincheck climatology build --demo` (or point the app at a cube with --cube)"


def float_formatters(df, precision: int = 3) -> dict:
    """Tabulator formatters showing every float column of ``df`` with ``precision`` decimals (the
    tables' numbers came out with six or more, e.g. a slope of -0.211495 %/decade); integer and
    text columns keep theirs. The data behind the table, and its CSV, keep full precision."""
    return {c: {"type": "money", "precision": precision, "thousand": ""} for c in df.columns
            if getattr(df[c].dtype, "kind", "") == "f"}


def cube_path(path: str | None = None) -> Path:
    from evaluation import cube as CB

    return Path(path) if path else CB.demo_cube_path()


def open_cube(path: str | None = None):
    """The climatology cube (memoised across sessions; reopened when rebuilt)."""
    from evaluation import cube as CB

    p = cube_path(path)
    if not is_complete(p):
        raise data.DataError(f"no climatology cube at {p}: {BUILD_HINT}")
    try:
        key = (str(p), marker_path(p).stat().st_mtime)
        return _cubes.get(key, lambda: CB.open_cube(p))
    except (IncompleteStore, OSError, ValueError) as e:
        raise data.DataError(f"cannot open the climatology cube {p}: {e}") from e


def is_archive_cube(cube) -> bool:
    """Whether ``cube`` was built from a PPS archive (``climatology build --archive``)."""
    return bool(cube.ledger.get("archive"))  # what describe_archive keys on, without describing it


def cube_years(path: str | None = None, *, archive_only: bool = False) -> tuple[int, int] | None:
    """First and last year the cube holds (None when it holds none, cannot be opened, or, with
    ``archive_only``, is not built from a PPS archive)."""
    try:
        cube = open_cube(path)
    except data.DataError:
        return None
    if archive_only and not is_archive_cube(cube):
        return None
    return _years_of(cube)


def _years_of(cube) -> tuple[int, int] | None:
    times = cube.times
    if not times.size:
        return None
    years = times.astype("datetime64[Y]").astype(int) + 1970
    return int(years.min()), int(years.max())


def archive_session(selection: Selection, cube_path: str | None = None, link: str = "") -> None:
    """A session on an archive cube (``raincheck serve --cube`` of a cube built from a PPS
    archive) starts where that cube's data are, for whatever its link (the query string the
    browser sent) does not say:

    - the period (y0/y1): the cube's years, not the synthetic record's 1998–2060, which would
      label a 2019 archive's views so;
    - the data (source): real granules, not synthetic orbits, whose world seed and orbit picker
      mean nothing next to an archive's numbers;
    - the granule picker's dates (from/to): the first day the archive covers, not 2019-06-01.

    A session on any other cube is left as it is."""
    from urllib.parse import parse_qs

    try:
        cube = open_cube(cube_path)
    except data.DataError:
        return
    if not is_archive_cube(cube):
        return
    query = parse_qs(link.lstrip("?"))
    if "y0" not in query and "y1" not in query:
        years = _years_of(cube)  # the cube opened above, known to be an archive's
        if years:
            selection.param.update(start_year=years[0], end_year=years[1])
    if "source" not in query:
        selection.source = "real"
    from evaluation.cube import archive as AR

    first = AR.describe_archive(cube.ledger)["period"][0]
    if first and "from" not in query and "to" not in query:
        import datetime as dt

        day = dt.date.fromisoformat(str(first)[:10])
        selection.param.update(pick_start=day.isoformat(), pick_end=(day + dt.timedelta(days=1)).isoformat())


class BoxNotComputed(data.DataError):
    """The selected box is not in the climatology cube and its box cube is not built (yet):
    ``plan`` (``evaluation.boxes.box_plan``) says what computing it takes."""

    def __init__(self, message: str, plan: BoxPlan):
        super().__init__(message)
        self.plan = plan


_plans = data.Memo(32)


def box_plan(main, spec: str) -> BoxPlan:
    """The plan of the box cube of ``spec`` for the main cube (memoised per main-cube version)."""
    from evaluation import boxes as BX


    fns = get_box_manager().model_fns
    try:
        stamp = marker_path(main.path).stat().st_mtime
    except (OSError, TypeError):
        stamp = None
    key = (str(main.path), stamp, spec, tuple(sorted(fns)))
    return _plans.get(key, lambda: BX.box_plan(spec, main, model_fns=fns))


def plan_text(plan: BoxPlan | dict) -> str:
    """The 'what computing this box takes' message."""

    plan = BoxPlan.coerce(plan)
    parts = []
    for g in plan.groups:
        name = "truth and reference" if g.sources[0] in ("truth", "reference") else g.sources[0]
        parts.append(f"{name}: {len(g.orbits)} of the cube's {g.of} orbits")
    text = (f"**{plan.spec}** is not in this climatology cube. It can be computed from the orbits of the cube's "
            f"record that cross the box ({plan_label(plan)} on this machine; {'; '.join(parts)}); every view then "
            f"answers for it.")
    if plan.skipped:
        text += " Not included: " + "; ".join(plan.skipped.values()) + "."
    if plan.notes:
        text += " " + " ".join(plan.notes)
    return text


def cube_for(selection: Selection, path: str | None = None):
    """(the cube answering the selection's region, the box plan or None): the main cube, or for
    a box it does not hold, the box cube once built (``evaluation.boxes.build_box_cube``); before
    that :class:`BoxNotComputed` (with the plan), or a DataError when no orbit crosses the box."""
    from evaluation import boxes as BX

    main = open_cube(path)
    try:
        r = RG.get_region(selection.region)
    except (ValueError, KeyError):
        return main, None
    if r.kind != "bbox" or r.spec in main.regions:
        return main, None
    try:
        plan = box_plan(main, r.spec)
    except Exception as e:  # noqa: BLE001 - planning problems are messages, not tracebacks
        log.exception("planning the box cube of %s failed", r.spec)
        raise data.DataError(f"region {r.spec} is not in this cube, and computing it cannot be planned: "
                             f"{type(e).__name__}: {e}") from e
    if not plan.groups:
        raise data.DataError(f"region {r.spec} is not in this cube, and no orbit of the cube's record crosses it "
                             "(nothing to compute): draw the box where the cube's orbits pass")
    if BX.box_complete(plan):
        return open_cube(plan.path), plan
    raise BoxNotComputed(plan_text(plan), plan)


def box_provenance(plan: BoxPlan | dict | None) -> dict:
    """What an export's manifest says about the box cube that answered (nothing without one)."""
    if not plan:
        return {}
    plan = BoxPlan.coerce(plan)
    return {"box_cube": {"path": plan.path, "region": plan.spec, "main_cube": plan.main_cube,
                         "orbits": plan.orbits, "sources": plan.sources, "not_included": dict(plan.skipped)}}


def query(selection: Selection) -> CubeQuery:
    """Region, period and season of the selection as cube query arguments."""
    if selection.end_year < selection.start_year:
        raise data.DataError(f"the period ends ({selection.end_year}) before it starts ({selection.start_year})")
    return CubeQuery(selection.region, f"{selection.start_year}-{selection.end_year}",
                     None if selection.season == "annual" else selection.season)


def models_in(cube, selection: Selection, box: BoxPlan | None = None) -> tuple[list[str], list[str]]:
    """(models of the selection that the cube holds, notes about the others); ``box``: the plan
    of the box cube answering (its notes and the reasons models were left out)."""
    have = [m for m in selection.models if m in cube.models]
    notes = []
    if box:
        notes.append(f"{box.spec}: answered from its box cube ({box.orbits} orbits of the climatology cube's "
                     "record that cross the box)")
    for m in selection.models:
        if m in cube.models:
            continue
        if box and m in box.skipped:
            notes.append(f"model {m} is not in the box cube: {box.skipped[m]}")
        else:
            notes.append(f"model {m} is not in the climatology cube; add it with "
                         f"`raincheck climatology build --sources {m}`")
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


def evaluate(cube, models, q: CubeQuery | dict, *, extremes: bool, n_boot: int = N_BOOT) -> dict:
    """``evaluation.report.evaluate`` for the query (the ``raincheck.evaluate/1`` dict), memoised;
    :func:`report` reads it as attributes."""
    from evaluation import report as R

    q = CubeQuery.coerce(q)
    key = (str(cube.path), tuple(models), q.region, q.period, q.season, extremes, n_boot if extremes else 0)
    return _reports.get(key, lambda: run_query(R.evaluate, cube, models, q.region, period=q.period,
                                               season=q.season, extremes=extremes, n_boot=n_boot))


def report(cube, models, q: CubeQuery | dict, *, extremes: bool, n_boot: int = N_BOOT) -> EvaluationReport:
    """The evaluation report of :func:`evaluate` as an :class:`evaluation.results.EvaluationReport`."""
    q = CubeQuery.coerce(q)
    key = ("typed", str(cube.path), tuple(models), q.region, q.period, q.season, extremes, n_boot if extremes else 0)
    return _reports.get(key, lambda: EvaluationReport.from_dict(evaluate(cube, models, q, extremes=extremes,
                                                                         n_boot=n_boot)))


def trends(cube, source: str, q: CubeQuery | dict, *, freq: str, stats: tuple, strip: bool):
    from evaluation import report as R

    q = CubeQuery.coerce(q)
    key = (str(cube.path), "trends", source, q.region, q.period, q.season, freq, stats, strip)
    return _reports.get(key, lambda: run_query(R.trends, cube, source, q.region, period=q.period,
                                               season=q.season, freq=freq, stats=stats, strip=strip))


def histogram(cube, source: str, q: CubeQuery | dict) -> Histogram:
    q = CubeQuery.coerce(q)
    return run_query(cube.histogram, source, q.region, period=q.period, season=q.season)


def notes_of(result) -> list[str]:
    """The notes of a view's answer (typed, or a dict from a view not yet typed)."""
    notes = result.get("notes") if isinstance(result, dict) else getattr(result, "notes", None)
    return list(notes or [])


def shared_answers() -> bool:
    return os.environ.get("RAINCHECK_VIEW_CACHE", "1").strip().lower() not in ("0", "off", "no", "false")


def answer_key(view) -> tuple:
    """What a view's answer depends on: the view, the cube (its path and version), the catalogue,
    the version of any other stored results it reads (its ``answer_stamp()``) and the selection's
    values the view watches."""

    p = cube_path(view.cube_path)
    try:
        stamp = marker_path(p).stat().st_mtime_ns
    except OSError:
        stamp = None
    sel = view.selection
    # a view answering from other stored results than the cube says which version of them it reads
    extra = view.answer_stamp() if hasattr(view, "answer_stamp") else None
    return (type(view).__name__, view.name_, str(p), stamp, view.catalog_path, extra,
            tuple((n, tuple(v) if isinstance(v, list) else v) for n in view._WATCH for v in [getattr(sel, n)]))


def answer(view):
    """``view.compute()``, memoised across sessions per :func:`answer_key` (errors are not kept:
    a box computed meanwhile, or a cube built, answers next time)."""
    if not shared_answers():
        return view.compute()
    return _answers.get(answer_key(view), view.compute)


def prepare_answers(cube_path: str | None = None, catalog_path: str | None = None) -> int:
    """Compute the evaluation views' answers for a new session's selection (the defaults) into
    the shared cache, so that the first user to open a view does not wait for its computation
    (and, the server being one process, neither do the others meanwhile). Called at server start,
    in a background thread; returns how many answers were prepared (problems are logged, and the
    views show them when opened)."""
    from app.views import make_views

    n = 0
    if not shared_answers():
        return n
    try:
        selection = Selection(view="swath")
        archive_session(selection, cube_path)  # what a session opened without a period starts on
        views = make_views(selection, catalog_path, cube_path)
    except Exception:  # noqa: BLE001 - the views report it when opened
        log.exception("preparing the views' answers failed")
        return n
    for v in views.values():
        if isinstance(v, EvaluationView):
            try:
                answer(v)
                n += 1
            except Exception as e:  # noqa: BLE001 - e.g. no cube: the view says so when opened
                log.info("no answer prepared for the %s view: %s", v.name_, e)
    return n


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
        self.box_control = None  # the "Compute this box" control while the box is not computed
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
        # a box being computed (maybe by another view or session) is looked at again when shown
        if event.new == self.name_ and (self._dirty or self.box_control is not None):
            self.update()

    def _box_done(self):
        """The box cube landed: answer from it (now if showing, else when shown)."""
        self._dirty = True
        if self.selection.view == self.name_:
            self.update()

    def alert(self, text, kind="warning"):
        return pn.pane.Alert(data.for_page(text), alert_type=kind, sizing_mode="stretch_width", margin=(2, 5))

    def compute(self):  # pragma: no cover - abstract
        """The view's answer: a typed answer (``app.views.answers``) or a dict; either has notes."""
        raise NotImplementedError

    def render(self, result) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self):
        self._dirty = False
        if self.box_control is not None:
            self.box_control.close()
            self.box_control = None
        try:
            self.result = answer(self)
            body = self.render(self.result)
        except BoxNotComputed as e:
            self.result = None
            self.box_control = BoxControl(e.plan, on_done=self._box_done)
            self._alerts.objects = [self.alert(str(e), "info")]
            self._body.objects = [self.box_control]
            return
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
        self._alerts.objects = [self.alert(n) for n in notes_of(self.result)]
        self._body.objects = body
