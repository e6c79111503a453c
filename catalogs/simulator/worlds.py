"""World presets: named, versioned sets of the synthetic world's response to a counterfactual warming.

Every orbit can be simulated in a counterfactual climate ``warming_K`` kelvin (of global-mean
surface temperature) warmer than its own scenario climate (:func:`catalogs.simulator.orbit_gmst_anomaly`):
the same weather (the same random draws) in a warmer (or cooler) climate, a pseudo-global-warming
pair (Schär et al. 1996). A world preset says what the warming does; every preset at
``warming_K = 0`` is today's world, bit for bit. The equations, magnitudes and citations are in
``docs/simulator.md`` ("World presets and counterfactual warming").

* ``today``: today's physics. The rain and its environment (surface temperature, vapour,
  freezing level, snow) follow the total climate, scenario + warming.
* ``stationary``: the control. The warming changes only the rain (the intensity scaling of
  :func:`catalogs.simulator.climate.intensity_factor`) and what is a function of rain (cloud liquid
  and ice); the environment that sets the Tb-rain relation stays at the orbit's scenario climate,
  so the observation operator does not change with warming.
* ``published``: today's physics plus the mechanisms from the literature (:data:`MECHANISMS`)
  acting on the warming at their published strength: super-Clausius-Clapeyron convective extremes
  (Lenderink & van Meijgaard 2008) and the moist-adiabatic rise of the freezing level;
  ``published-freezing-level`` and ``published-super-cc`` switch on one of them each, so an
  experiment can tell which mechanism moves a retrieval. :func:`compose` builds other combinations.

A preset's ``version`` changes whenever its output at some warming changes; the warming-response
stores key results by preset name and version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields

from catalogs.simulator.climate import SCALING_EXTREME_PCT_PER_K, SCALING_MEAN_PCT_PER_K

#: the counterfactual warming a world accepts (K of GMST relative to the orbit's scenario climate)
WARMING_RANGE_K = (-3.0, 8.0)


@dataclass(frozen=True)
class Mechanism:
    """One named physical mechanism of a world's response to warming.

    ``params``: the :class:`World` parameters the mechanism sets when it is on, as
    ``(name, value)`` pairs (the world's physics reads only the parameters)."""

    name: str
    description: str
    magnitude: str
    citation: str
    params: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class World:
    """A world preset: what a counterfactual warming does to the synthetic world.

    Physics parameters (read by :mod:`catalogs.simulator`):

    * ``environment_warms``: surface temperature, water vapour, freezing level and snow follow the
      warming (True) or stay at the orbit's scenario climate (False, the stationary control);
    * ``convective_extreme_pct_per_K``: scaling of the heaviest convective rain (wet rank u ≥ 0.95,
      ramped in from u = 0.70 like the base scaling) per K of counterfactual warming; None = the
      base world's :data:`~catalogs.simulator.climate.SCALING_EXTREME_PCT_PER_K` (7 %/K);
    * ``freezing_level_rule``: how the freezing level rises with the counterfactual warming:
      ``"lapse_rate"`` (today's rule, as for the scenario climate: +1/6 km per K, a lapse rate of
      6 K/km) or ``"moist_adiabat"`` (the rise of the 0 °C level of a moist adiabat over the pixel's
      surface temperature, :func:`catalogs.simulator.climate.moist_adiabat_freezing_km`: ≈ 0.17 km/K
      over a 280 K surface, 0.31 km/K over a 300 K tropical ocean).
    """

    name: str
    version: str
    title: str
    description: str
    mechanisms: tuple[Mechanism, ...] = ()
    environment_warms: bool = True
    convective_extreme_pct_per_K: float | None = None
    freezing_level_rule: str = "lapse_rate"
    #: injected scaling of the truth per K of warming, by statistic (see :meth:`injected_pct_per_K`)
    injected: tuple[tuple[str, float], ...] = field(default=())

    def injected_pct_per_K(self, statistic: str) -> float | None:
        """The truth's injected response (%/K, compound) of ``statistic`` in this world, or None when
        the world does not set it exactly (measure it on the scenes).

        Statistics: ``"p99.9"``, ``"p99.99"`` (all-pixel quantiles: they lie above the 95th
        percentile of wet rain wherever the wet fraction is ≤ 50 %, so the scaling of the top wet
        ranks sets them exactly), ``"wet_q95+"`` (every wet pixel above the 95th conditional
        percentile), ``"mean"`` (an expectation over the weather: exact per regime for the uncapped
        lognormal, but a few scenes' wet ranks are not uniform, so their mean moves by ±1 %/K
        around it; 10 scenes of 1 200 scans give 2.04 %/K in ``today``). The *pooled* p99.9 of a
        scene set is only approximately the top wet ranks' scaling: pooled over regimes, a p99.9
        pixel can sit below the 95th wet percentile of a heavy regime, where the ramp scales less.
        Measured in ``today`` (7 %/K injected): 6.97-6.99 %/K on the 71 shipped scenes, 6.91-6.98
        and 6.67-6.70 %/K on two draws of 10 scenes."""
        table = dict(self.injected)
        if statistic not in _STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; expected one of {_STATISTICS}")
        return table.get(statistic)

    def describe(self) -> dict:
        """A JSON-able description (for stores and the app)."""
        return {"name": self.name, "version": self.version, "title": self.title, "description": self.description,
                "environment_warms": self.environment_warms,
                "convective_extreme_pct_per_K": self.convective_extreme_pct_per_K,
                "freezing_level_rule": self.freezing_level_rule,
                "injected_pct_per_K": {s: self.injected_pct_per_K(s) for s in _STATISTICS},
                "mechanisms": [{"name": m.name, "description": m.description, "magnitude": m.magnitude,
                                "citation": m.citation, "params": dict(m.params)} for m in self.mechanisms]}


_STATISTICS = ("p99.9", "p99.99", "wet_q95+", "mean")

SUPER_CC = Mechanism(
    name="super_cc_convective_extremes",
    description=("Sub-daily convective rain extremes intensify at about twice the Clausius-Clapeyron rate: the "
                 "heaviest convective pixels (wet rank u >= 0.95, ramped in from u = 0.70 with the base scaling's "
                 "ramp; convective pixels only) scale at 14 %/K of warming instead of 7 %/K. Rain occurrence does "
                 "not change; the mean is not held (it rises by about 6 %/K, the rain volume being in the top "
                 "ranks)."),
    magnitude=("+14 %/K (2 x Clausius-Clapeyron) for one-hour extremes; present-day temperature scaling at De Bilt "
               "above 12 C daily mean temperature, and close to 14 %/K of warming in a 25 km regional climate model "
               "over much of Europe. Upper end: in Switzerland, 10-min peaks of lightning (convective) storms alone "
               "scale at 9.3 %/K, mixing storm types gives 13 %/K (Molnar et al. 2015)."),
    citation=("Lenderink, G. & van Meijgaard, E. (2008): Increase in hourly precipitation extremes beyond "
              "expectations from temperature changes. Nature Geoscience 1, 511-514, doi:10.1038/ngeo262; "
              "caveat: Molnar, P. et al. (2015), Hydrol. Earth Syst. Sci. 19, 1753-1766, doi:10.5194/hess-19-1753-2015"),
    params=(("convective_extreme_pct_per_K", 14.0),))

MOIST_ADIABAT_FREEZING_LEVEL = Mechanism(
    name="moist_adiabat_freezing_level",
    description=("The tropical troposphere follows a moist adiabat, so it warms more aloft than at the surface and "
                 "the freezing level rises faster than a fixed lapse rate says: the 0 C level of a parcel lifted "
                 "(80 % relative humidity, pseudo-adiabat) from the pixel's surface temperature, instead of "
                 "today's +1/6 km per K. A higher freezing level deepens the warm-rain layer (more emission per "
                 "mm/h: tau_r = a R^b H0) and lifts the ice (more parallax)."),
    magnitude=("freezing-level rise per K of surface warming: 0.17 km/K over a 280 K surface, 0.23 at 290 K, "
               "0.27 at 295 K, 0.31 at 300 K, 0.35 at 303 K (today's rule: 0.167 km/K everywhere); computed by "
               "integrating the pseudo-adiabat (Bolton 1980 saturation vapour pressure)"),
    citation=("O'Gorman, P. A. & Singh, M. S. (2013): Vertical structure of warming consistent with an upward shift "
              "in the middle and upper troposphere. Geophys. Res. Lett. 40, 1838-1842, doi:10.1002/grl.50328 "
              "(tropical warming follows moist-adiabatic lapse rates); Bolton, D. (1980): The computation of "
              "equivalent potential temperature. Mon. Wea. Rev. 108, 1046-1053"),
    params=(("freezing_level_rule", "moist_adiabat"),))

MECHANISMS: dict[str, Mechanism] = {m.name: m for m in (SUPER_CC, MOIST_ADIABAT_FREEZING_LEVEL)}


def _extreme_table(pct: float) -> tuple[tuple[str, float], ...]:
    return (("p99.9", pct), ("p99.99", pct), ("wet_q95+", pct))


TODAY = World(
    name="today", version="today-1", title="Today's physics",
    description=("The rain and its environment follow the total climate (scenario + warming): rain intensity "
                 "(+7 %/K at the top, +2 %/K mean), water vapour +7 %/K, surface temperature +1 K/K, freezing "
                 "level +1/6 km per K, snow where the warmed surface stays below 271 K."),
    injected=_extreme_table(SCALING_EXTREME_PCT_PER_K) + (("mean", SCALING_MEAN_PCT_PER_K),))

STATIONARY = World(
    name="stationary", version="stationary-1", title="Stationary control",
    description=("The warming changes the rain only (intensity scaling as in today's world) and what is a function "
                 "of rain (cloud liquid, ice); surface temperature, vapour, freezing level and snow stay at the "
                 "orbit's scenario climate, so the Tb-rain relation does not change with warming."),
    environment_warms=False,
    injected=_extreme_table(SCALING_EXTREME_PCT_PER_K) + (("mean", SCALING_MEAN_PCT_PER_K),))


def compose(name: str, version: str, title: str, description: str, mechanisms: tuple[Mechanism, ...],
            base: World = TODAY) -> World:
    """A world: ``base`` with ``mechanisms`` switched on (each sets its parameters); the injected
    table follows (the top scaling of a super-CC mechanism; the mean is then not set exactly)."""
    params = {}
    for m in mechanisms:
        for k, v in m.params:
            if k in params and params[k] != v:
                raise ValueError(f"mechanisms disagree on {k}: {params[k]!r} and {v!r}")
            params[k] = v
    unknown = set(params) - {f.name for f in dataclass_fields(World)}
    if unknown:
        raise ValueError(f"mechanism parameters {sorted(unknown)} are not World parameters")
    injected = dict(base.injected)
    if "convective_extreme_pct_per_K" in params:
        injected = dict(_extreme_table(float(params["convective_extreme_pct_per_K"])))
    return replace(base, name=name, version=version, title=title, description=description,
                   mechanisms=tuple(base.mechanisms) + tuple(mechanisms), injected=tuple(injected.items()), **params)


PUBLISHED = compose(
    "published", "published-2", "Published mechanisms at published strength",
    "Today's physics plus every mechanism from the literature acting on the counterfactual warming at its "
    "published strength: super-Clausius-Clapeyron convective extremes and the moist-adiabatic freezing level.",
    (SUPER_CC, MOIST_ADIABAT_FREEZING_LEVEL))
PUBLISHED_FREEZING = compose(
    "published-freezing-level", "published-freezing-level-1", "Moist-adiabatic freezing level only",
    "Today's physics plus the moist-adiabatic rise of the freezing level (an observation-side mechanism: the truth "
    "scales as in today's world, the Tb-rain relation changes more).",
    (MOIST_ADIABAT_FREEZING_LEVEL,))
PUBLISHED_SUPER_CC = compose(
    "published-super-cc", "published-super-cc-1", "Super-Clausius-Clapeyron convective extremes only",
    "Today's physics plus super-Clausius-Clapeyron scaling of convective extremes (a truth-side mechanism: the "
    "environment warms as in today's world).",
    (SUPER_CC,))

WORLDS: dict[str, World] = {w.name: w for w in (TODAY, STATIONARY, PUBLISHED, PUBLISHED_FREEZING, PUBLISHED_SUPER_CC)}


def get_world(name: str | World) -> World:
    """The preset called ``name`` (a :class:`World` passes through); unknown names raise a ValueError
    listing the presets."""
    if isinstance(name, World):
        return name
    try:
        return WORLDS[str(name)]
    except KeyError:
        raise ValueError(f"unknown world preset {name!r}; presets: {', '.join(WORLDS)}") from None


def check_warming(warming_K) -> float:
    """``warming_K`` as a float, or a ValueError naming the value and the accepted range."""
    lo, hi = WARMING_RANGE_K
    if isinstance(warming_K, bool):
        raise ValueError(f"warming_K must be a number of kelvin in [{lo:g}, {hi:g}], got {warming_K!r}")
    try:
        w = float(warming_K)
    except (TypeError, ValueError):
        raise ValueError(f"warming_K must be a number of kelvin in [{lo:g}, {hi:g}], got {warming_K!r}") from None
    if not math.isfinite(w) or not lo <= w <= hi:
        raise ValueError(f"warming_K = {warming_K!r} K is outside the accepted range [{lo:g}, {hi:g}] K "
                         f"(counterfactual warming relative to the orbit's scenario climate)")
    return w
