"""The current selection: one param object per session, mirrored in the URL (shareable link).

Every view watches this object; the sidebar's widgets edit it. ``sync_url`` ties it to the
browser's query string, so a reload or a shared link restores the same state.
"""

from __future__ import annotations

from dataclasses import dataclass

import param

from catalogs.schema import CHANNELS
from catalogs.simulator.worlds import WORLDS
from evaluation.warming.response import QUANTILE_LEVELS as WARMING_QUANTILES
from evaluation.warming.summary import GROUPS as WARMING_GROUP_SPECS
from evaluation.warming.summary import THRESHOLDS as WARMING_THRESHOLDS
from catalogs.userinput import UserInputError, check_text, check_value, show
from datetime import datetime
from urllib.parse import parse_qsl



@dataclass(frozen=True)
class ViewSpec:
    """One view (a tab) of the app: its link name, its tab label, the module that holds it, the
    name in that module of the factory building a session's component (called with
    ``selection=, catalog_path=, cube_path=``; None: the app builds it itself, as the swath map
    with its controls) and of ``export_parts`` (what :mod:`app.export` draws)."""

    name: str
    label: str
    module: str
    factory: str | None = "make_view"
    exporter: str = "export_parts"


#: The one registry of views, in tab order: adding a view is a module and a line here
#: (plus what the browser tests wait for, ``tests/app_helpers.VIEW_MARKS``).
VIEW_SPECS = (
    ViewSpec("swath", "Swath map", "app.swath", factory=None),
    ViewSpec("distributions", "Distributions", "app.views.distributions", "DistributionsView"),
    ViewSpec("extremes", "Extremes", "app.views.extremes", "ExtremesView"),
    ViewSpec("trends", "Trends", "app.views.trends", "TrendsView"),
    ViewSpec("scores", "Scores", "app.views.scores", "ScoresView"),
    ViewSpec("compare", "Model comparison", "app.views.compare", "make_view"),
    ViewSpec("warming", "Warming response", "app.views.warming", "make_view"),
)
#: The views' link names, in order, and their tab labels (derived from :data:`VIEW_SPECS`).
VIEWS = tuple(v.name for v in VIEW_SPECS)
VIEW_LABELS = {v.name: v.label for v in VIEW_SPECS}
#: Swath-map layers besides the model products.
LAYERS = ("Tb", "reference", "truth")
#: Model products (``quantile`` shows the chosen quantile level).
PRODUCTS = ("precip_mean", "precip_median", "quantile", "pop", "p_heavy", "ood_score")
PRODUCT_LABELS = {"precip_mean": "mean", "precip_median": "median", "quantile": "quantile",
                  "pop": "PoP (> 0.1 mm/h)", "p_heavy": "P(heavy > 10 mm/h)", "ood_score": "OOD score"}
#: export formats of every view (figures for papers)
FORMATS = ("pdf", "svg", "png")
SEASONS = ("annual", "DJF", "MAM", "JJA", "SON")
SOURCES = ("synthetic", "real")
PROJECTIONS = ("PlateCarree", "Robinson", "Mollweide", "EqualEarth")

TREND_STATS = ("mean", "wet_fraction", "q99", "q999", "exceed")
TREND_FREQS = ("year", "season")
PIXELS = ("strip", "all")

#: Warming-response view (``evaluation.warming`` results): world presets, groups of pixels
#: (region / surface), populations (all pixels or wet ones) and statistics of panel (b).
WARMING_WORLDS = tuple(WORLDS)
WARMING_GROUPS = tuple(WARMING_GROUP_SPECS)
WARMING_POPULATIONS = ("all", "wet")
#: what panel (b) of the warming view draws against the warming level
WARMING_AXES = ("response", "error")


def warming_stat_key(statistic: str, level_q=None, threshold=None) -> str:
    """The short name of a forced-response statistic: ``q99.9`` for the 0.999 quantile,
    ``exceed:10`` for the frequency above 10 mm h-1, else the statistic's own name."""
    if statistic == "quantile":
        return f"q{round(100 * float(level_q), 4):g}"
    if statistic == "exceedance" and threshold is not None and float(threshold) == float(threshold):
        return f"exceed:{float(threshold):g}"
    return str(statistic)


#: the statistics of ``evaluation.warming`` (extremes first: the default is q99.9)
WARMING_STATS = (tuple(warming_stat_key("quantile", q) for q in sorted(WARMING_QUANTILES, reverse=True))
                 + ("mean", "wet_fraction") + tuple(warming_stat_key("exceedance", None, t) for t in WARMING_THRESHOLDS))
#: Warming levels a link may ask for (K above the training climate; ``raincheck warming run`` refuses others)
WARMING_MAX_K = 6.0

#: URL query keys of the parameters mirrored in the link.
URL_KEYS = {
    "view": "view", "source": "source", "world": "world", "orbit": "orbit", "granule": "granule",
    "models": "models", "layers": "layers", "channel": "channel", "product": "product",
    "quantile_level": "q", "projection": "proj", "region": "region", "start_year": "y0",
    "end_year": "y1", "season": "season", "threshold": "thr", "pick_start": "from", "pick_end": "to",
    "trend_stat": "stat", "trend_freq": "freq", "pixels": "pixels",
    "warm_world": "preset", "warm_group": "group", "warm_pop": "population", "warm_level": "warming",
    "warm_stat": "wstat", "warm_axis": "wy",
}


class Selection(param.Parameterized):
    """What the user is looking at. Plain values only (it round-trips through the URL)."""

    view = param.Selector(default="swath", objects=list(VIEWS), doc="The view shown")
    source = param.Selector(default="synthetic", objects=list(SOURCES),
                            doc="Synthetic orbits (with truth) or real PPS granules")
    world = param.Integer(default=0, bounds=(0, None), doc="World seed of the synthetic system")
    orbit = param.Integer(default=20000, doc="Orbit number")
    granule = param.String(default="", doc="Path of a real granule (inside a data root)")
    models = param.List(default=[], item_type=str, doc="Models to show")
    layers = param.List(default=["Tb", "reference", "truth"], item_type=str, doc="Swath-map layers")
    channel = param.Selector(default="89.0V", objects=list(CHANNELS), doc="Tb channel")
    product = param.Selector(default="precip_mean", objects=list(PRODUCTS), doc="Model product")
    quantile_level = param.Number(default=0.9, bounds=(0.01, 0.99), doc="Quantile level shown")
    projection = param.Selector(default="PlateCarree", objects=list(PROJECTIONS))
    region = param.String(default="global", doc="Region spec (evaluation.regions.get_region)")
    start_year = param.Integer(default=1998, doc="First year of the period (default: the synthetic record)")
    end_year = param.Integer(default=2060, doc="Last year of the period")
    season = param.Selector(default="annual", objects=list(SEASONS))
    threshold = param.Number(default=10.0, bounds=(0.01, 500), doc="Rain-rate threshold (mm h-1)")
    pick_start = param.String(default="2019-06-01", doc="Orbit picker: period start (ISO date)")
    pick_end = param.String(default="2019-06-02", doc="Orbit picker: period end (ISO date)")
    trend_stat = param.Selector(default="mean", objects=list(TREND_STATS),
                                doc="Trend statistic (exceed = P(rate >= threshold))")
    trend_freq = param.Selector(default="year", objects=list(TREND_FREQS), doc="Trend series: annual or seasonal")
    pixels = param.Selector(default="strip", objects=list(PIXELS),
                            doc="Evaluate on the reference strip (with the reference) or on all pixels (truth only)")
    warm_world = param.Selector(default="today", objects=list(WARMING_WORLDS),
                                doc="World preset of the warming-response experiment")
    warm_group = param.Selector(default="global", objects=list(WARMING_GROUPS),
                                doc="Warming response: pixels of this region / surface")
    warm_pop = param.Selector(default="all", objects=list(WARMING_POPULATIONS),
                              doc="Warming response: quantiles of all pixels or of wet pixels (>= 0.1 mm h-1)")
    warm_level = param.Number(default=2.0, bounds=(0.0, WARMING_MAX_K), inclusive_bounds=(False, True),
                              doc="Warming response: K of warming above the training climate")
    warm_stat = param.Selector(default="q99.9", objects=list(WARMING_STATS),
                               doc="Warming response: the statistic drawn against the warming level")
    warm_axis = param.Selector(default="response", objects=list(WARMING_AXES),
                               doc="Warming response: draw the response of each source, or each model's error "
                                   "(model − truth), against the warming level")

    def query(self) -> dict:
        """The selection as URL query values (what a shared link carries)."""
        out = {}
        for name, key in URL_KEYS.items():
            v = getattr(self, name)
            out[key] = ",".join(v) if isinstance(v, list) else v
        return out

    def describe(self) -> dict:
        """The selection as plain data (provenance manifests)."""
        return {name: getattr(self, name) for name in URL_KEYS}


#: what a parameter is, in a message, where its name does not say it
_WHAT = {"warm_world": "world preset", "warm_group": "group (region / surface)", "warm_pop": "population",
         "warm_stat": "warming-response statistic", "warm_axis": "warming-response axis"}


def _invalid(selection: Selection, name: str) -> str:
    """Why a link value for ``name`` was not applied (what the parameter accepts)."""
    p = selection.param[name]
    if isinstance(p, param.Selector):
        return f"not a valid {_WHAT.get(name, name)}; choose one of {', '.join(map(str, p.objects))}"
    if isinstance(p, param.Integer):
        lo, hi = p.bounds or (None, None)
        rng = f" from {lo}" if lo is not None else ""
        rng += f" to {hi}" if hi is not None else ""
        return f"not a whole number{rng}"
    if isinstance(p, param.Number):
        lo, hi = p.bounds or (None, None)
        return f"not a number{f' between {lo} and {hi}' if lo is not None and hi is not None else ''}"
    if isinstance(p, param.List):
        return "not a comma-separated list of names"
    return f"not a valid {name}"


def _text_problem(name: str, value) -> str | None:
    """Why a text value of the link is refused (:mod:`catalogs.userinput`), or None."""
    try:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                # the granule is a catalogue parameter: data, never a template
                (check_value if name == "granule" else check_text)(URL_KEYS.get(name, name), v)
    except UserInputError as e:
        return e.reason
    return None


def _period_problems(selection: Selection) -> list[str]:
    """Inverted periods of a link (y0 > y1, from >= to): reported, and set back to the defaults."""

    out = []
    if selection.start_year > selection.end_year:
        out.append(f"ignored the link's y0={selection.start_year} and y1={selection.end_year}: the period "
                   "ends before it starts (give y0 <= y1)")
        selection.param.update(start_year=selection.param.start_year.default,
                               end_year=selection.param.end_year.default)
    try:
        a, b = datetime.fromisoformat(selection.pick_start), datetime.fromisoformat(selection.pick_end)
    except (TypeError, ValueError):
        bad = [k for k, v in (("from", selection.pick_start), ("to", selection.pick_end))
               if not _is_date(v)]
        if bad:
            out.append("ignored the link's " + " and ".join(
                f"{k}={show(selection.pick_start if k == 'from' else selection.pick_end)}" for k in bad)
                       + ": not an ISO date (e.g. 2019-06-01)")
            selection.param.update(pick_start=selection.param.pick_start.default,
                                   pick_end=selection.param.pick_end.default)
        return out
    if a >= b:
        out.append(f"ignored the link's from={selection.pick_start} and to={selection.pick_end}: the period "
                   "ends before it starts (give from < to)")
        selection.param.update(pick_start=selection.param.pick_start.default,
                               pick_end=selection.param.pick_end.default)
    return out


def _is_date(v) -> bool:
    try:
        datetime.fromisoformat(v)
        return True
    except (TypeError, ValueError):
        return False


def guard_text(selection: Selection, notify=None, reported=()) -> None:
    """Apply the gate of :func:`_text_problem` whenever a text value changes (the browser
    re-sending the link, a widget): a refused value is put back to the previous one (or the
    default) and ``notify(message)`` is called, unless the message is in ``reported``."""
    names = [n for n in URL_KEYS if isinstance(selection.param[n], (param.String, param.List))]
    seen = set(reported)

    def check(*events):
        for e in events:
            why = _text_problem(e.name, e.new)
            if not why:
                continue
            back = e.old if _text_problem(e.name, e.old) is None else selection.param[e.name].default
            selection.param.update(**{e.name: back})
            msg = f"ignored the link's {URL_KEYS.get(e.name, e.name)}={show(e.new)}: {why}"
            if notify is not None and msg not in seen:
                seen.add(msg)
                notify(msg.replace("the link's ", ""))

    selection.param.watch(check, names)


def sync_url(selection: Selection, location=None, notify=None) -> list[str]:
    """Mirror ``selection`` in the browser URL (reload or a shared link restores it).

    Returns messages about query values that could not be applied (e.g. ``?orbit=abc``, a
    value with control characters, a granule that looks like a template, an inverted period);
    those keep their defaults and the app shows the messages (escaped: they quote the link).
    Text values stay gated afterwards (:func:`guard_text`; ``notify`` gets its messages)."""
    import panel as pn

    location = location if location is not None else pn.state.location
    problems: list[str] = []
    if location is None:
        return problems


    raw = dict(parse_qsl(str(getattr(location, "search", "") or "").lstrip("?"), keep_blank_values=True))

    def on_error(mapped):
        # Panel applies the link's values all at once; apply them one by one so one bad value
        # (e.g. ?orbit=abc) does not discard the good ones, and report the bad ones
        for name, value in (mapped or {}).items():
            if isinstance(selection.param[name], param.List) and isinstance(value, str):
                # a hand-written link: ?models=a,b rather than the JSON list Panel writes
                value = [v.strip() for v in value.split(",") if v.strip()]
            try:
                selection.param.update(**{name: value})
            except Exception:
                key = URL_KEYS.get(name, name)
                problems.append(f"ignored the link's {key}={show(raw.get(key, value))}: {_invalid(selection, name)}")

    location.sync(selection, URL_KEYS, on_error=on_error)
    for name in URL_KEYS:
        value = getattr(selection, name)
        why = _text_problem(name, value)
        if why:
            problems.append(f"ignored the link's {URL_KEYS.get(name, name)}={show(value)}: {why}")
            selection.param.update(**{name: selection.param[name].default})
    problems += _period_problems(selection)
    guard_text(selection, notify, problems)  # the browser may send the link again later
    return problems
