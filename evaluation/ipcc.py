"""The IPCC AR6 projection envelope that raincheck compares trends against, with sources, and
the verdict (consistent / inconsistent / not detectable / detected, no AR6 expectation). Never
a bare pass/fail.

Sources
-------
- Global mean precipitation: +1 to +3 % per K of global warming. IPCC AR6 WGI Chapter 8,
  §8.2.1 (global mean precipitation increases 1–3 %/°C, "hydrological sensitivity"); CMIP6
  hydrological sensitivity ≈ 2.5 %/K, range 2.1–3.1 %/K (Pendergrass 2020, Clim. Change).
- Extreme precipitation intensity: ≈ +7 % per K (Clausius–Clapeyron). IPCC AR6 WGI SPM B.2.4
  ("extreme daily precipitation events are projected to intensify by about 7% for each 1°C of
  global warming"); Chapter 11 §11.4. The band 4–10 %/K used as "consistent" is raincheck's
  tolerance around the CC rate (a choice, stated in every verdict), not an IPCC range.
- 10-year 1-day precipitation events over land relative to 1850–1900, IPCC AR6 WGI SPM Figure
  SPM.6 (median changes): +1 °C → frequency ×1.3, intensity +6.7 %; +1.5 °C → ×1.5, +10.5 %;
  +2 °C → ×1.7, +14.0 %; +4 °C → ×2.7, +30.2 %.
- Observed warming: 2011–2020 was 1.09 °C above 1850–1900 (AR6 WGI SPM A.1.2); recent rate
  ≈ 0.2–0.26 °C per decade (Forster et al. 2024, ESSD, Indicators of Global Climate Change).
- Regional signs of mean precipitation change: "very likely" increases at high latitudes, over
  the equatorial Pacific and parts of the monsoon regions; decreases over parts of the
  subtropics (AR6 WGI SPM B.3.1, B.3.2; TS.4.3; Atlas). The table :data:`REGIONAL_SIGN` lists
  the AR6 reference regions (codes of the shipped regionmask AR6 set) raincheck treats as having
  a robust sign; elsewhere no sign is expected and only detection is reported.

What the extreme envelope applies to
------------------------------------
AR6's ≈ 7 %/K is about *extreme* precipitation. raincheck applies it to extreme statistics only:
the all-pixel quantiles at level ≥ 0.999 (``q999``, ``q9999``) and the frequency of exceeding a
high threshold (``exceed:t`` with t ≥ :data:`HIGH_THRESHOLD_MM_H`). The all-pixel ``q99`` is
not one: with a few percent of pixels wet it sits near the 85th *wet* percentile (with 6.5 %
wet, 1 − 0.01/0.065 ≈ 0.85), a moderate rain rate for which AR6 gives no expectation -- and which
the synthetic world scales by only ≈ 1.8 %/K by design (:func:`world_scaling_pct_per_K`). So
``q99``, lower quantiles, the wet fraction and the exceedance of lower thresholds get no AR6
envelope: a detected change there is "detected, no AR6 expectation", never "consistent".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Envelope:
    quantity: str
    lo: float  # %/K
    hi: float  # %/K
    central: float | None
    source: str
    note: str = ""

    def to_json(self) -> dict:
        return {"quantity": self.quantity, "lo_pct_per_K": _j(self.lo), "hi_pct_per_K": _j(self.hi),
                "central_pct_per_K": _j(self.central), "source": self.source, "note": self.note}


def _j(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else (None if np.isnan(x) else ("inf" if x > 0 else "-inf"))


GLOBAL_MEAN = Envelope(
    "mean", 1.0, 3.0, 2.5,
    "IPCC AR6 WGI Ch.8 §8.2.1 (1–3 %/K); Pendergrass 2020 (CMIP6 2.1–3.1 %/K, mean ≈ 2.5)",
    "global-mean precipitation; applied to the global series only")
EXTREME_INTENSITY = Envelope(
    "extreme_intensity", 4.0, 10.0, 7.0,
    "IPCC AR6 WGI SPM B.2.4 and Ch.11 §11.4 (≈ +7 %/K, Clausius–Clapeyron)",
    "4–10 %/K is raincheck's tolerance around the CC rate, not an IPCC range")

#: AR6 SPM.6: warming (K) -> (frequency ratio, intensity change %) of the 10-year 1-day event over land.
SPM6_10YR_LAND = {1.0: (1.3, 6.7), 1.5: (1.5, 10.5), 2.0: (1.7, 14.0), 4.0: (2.7, 30.2)}

#: Observed warming and rate (for the labelled default GMST series of real data).
GMST_2011_2020_K = 1.09  # AR6 SPM A.1.2
GMST_RATE_K_PER_DECADE = 0.25  # Forster et al. 2024 (0.26 K/decade 2014–2023); AR6 ≈ 0.2

#: AR6 reference regions with a robust sign of mean precipitation change (+1 wetter, -1 drier).
#: Sources: AR6 WGI SPM B.3.1 (high latitudes, equatorial Pacific, monsoon regions wetter;
#: parts of the subtropics drier) and the Atlas / TS.4.3 regional assessment.
REGIONAL_SIGN = {
    # high latitudes (very likely wetter)
    "GIC": +1, "NWN": +1, "NEN": +1, "RAR": +1, "WSB": +1, "ESB": +1, "RFE": +1, "NEU": +1,
    "ARO": +1, "EAN": +1, "WAN": +1, "SOO": +1,
    # equatorial Pacific and monsoon regions (likely wetter)
    "EPO": +1, "SAS": +1, "EAS": +1,
    # subtropical drying (likely drier); Central America is the AR6 regions NCA (northern) and
    # SCA (southern Central America), AR6 Atlas.7.1 (there is no AR6 region "CAM")
    "MED": -1, "WSAF": -1, "ESAF": -1, "NCA": -1, "SCA": -1,
}
REGIONAL_SOURCE = "IPCC AR6 WGI SPM B.3.1–B.3.2, TS.4.3, Atlas (sign of mean precipitation change)"


def spm6_expected(warming_K: float) -> dict:
    """Interpolated SPM.6 change of the 10-year 1-day land event at ``warming_K`` above
    1850–1900 (linear between the table's levels, through (0 K: ×1, +0 %))."""
    w = np.array([0.0] + sorted(SPM6_10YR_LAND))
    f = np.array([1.0] + [SPM6_10YR_LAND[k][0] for k in sorted(SPM6_10YR_LAND)])
    i = np.array([0.0] + [SPM6_10YR_LAND[k][1] for k in sorted(SPM6_10YR_LAND)])
    if warming_K < 0 or warming_K > w[-1]:
        raise ValueError(f"SPM.6 covers 0–{w[-1]:g} K of warming, got {warming_K}")
    return {"warming_K": float(warming_K), "frequency_ratio": float(np.interp(warming_K, w, f)),
            "intensity_change_pct": float(np.interp(warming_K, w, i)),
            "source": "IPCC AR6 WGI SPM Figure SPM.6 (10-year 1-day event over land, median)"}


def frequency_envelope(tail_slope: float) -> Envelope:
    """Expected %/K of the frequency of exceeding a fixed high threshold, if intensities scale at
    the :data:`EXTREME_INTENSITY` rates: P(X ≥ u) → P(X ≥ u/(1+s)), so
    d ln P / dT = -(d ln P / d ln x) · ln(1+s). ``tail_slope`` = d ln P / d ln x (< 0) of the
    record's own exceedance curve at the threshold."""
    def pct(s):
        return 100 * (np.exp(-tail_slope * np.log1p(s / 100)) - 1)

    return Envelope("exceedance_frequency", pct(EXTREME_INTENSITY.lo), pct(EXTREME_INTENSITY.hi),
                    pct(EXTREME_INTENSITY.central), EXTREME_INTENSITY.source,
                    f"derived from the intensity scaling through the record's exceedance curve "
                    f"(local tail slope d ln P / d ln x = {tail_slope:.2f})")


#: exceedance thresholds at or above this (mm h-1, SatRain's heavy-rain threshold) count as extreme
HIGH_THRESHOLD_MM_H = 10.0
#: all-pixel quantile levels at or above this count as extreme
EXTREME_LEVEL = 0.999


def quantile_level(stat: str) -> float | None:
    """The level of a quantile statistic name ("q99" → 0.99, "q999" → 0.999, "q50" → 0.5), else None."""
    if len(stat) > 1 and stat[0] == "q" and stat[1:].isdigit():
        return float("0." + stat[1:])
    return None


def is_extreme(stat: str) -> bool:
    """Whether AR6's extreme-precipitation scaling applies to ``stat`` (see the module docstring)."""
    lvl = quantile_level(stat)
    if lvl is not None:
        return lvl >= EXTREME_LEVEL - 1e-12
    if stat.startswith("exceed:"):
        try:
            return float(stat.split(":", 1)[1]) >= HIGH_THRESHOLD_MM_H
        except ValueError:
            return False
    return False


def envelope_for(stat: str, region: str = "global", *, tail_slope: float | None = None) -> Envelope | None:
    """The AR6 expectation for a series: ``stat`` one of mean, wet_fraction, q<level>,
    exceed:<t>; ``region`` a region spec. None when AR6 gives no quantitative expectation
    (e.g. the all-pixel q99, which is not an extreme statistic; see the module docstring)."""
    reg = (region or "global").upper()
    if quantile_level(stat) is not None:
        return EXTREME_INTENSITY if is_extreme(stat) else None
    if stat.startswith("exceed"):
        if not is_extreme(stat) or tail_slope is None or not np.isfinite(tail_slope):
            return None
        return frequency_envelope(tail_slope)
    if stat == "mean":
        if reg == "GLOBAL":
            return GLOBAL_MEAN
        sign = REGIONAL_SIGN.get(reg)
        if sign == +1:
            return Envelope("mean", 0.0, np.inf, None, REGIONAL_SOURCE, f"{reg}: wetter with warming")
        if sign == -1:
            return Envelope("mean", -np.inf, 0.0, None, REGIONAL_SOURCE, f"{reg}: drier with warming")
        return None
    return None  # wet fraction: AR6 gives no quantitative global expectation


NO_EXPECTATION = "detected, no AR6 expectation"
VERDICTS = ("consistent", "inconsistent", "not detectable", NO_EXPECTATION)


def verdict(estimate: float, ci: tuple[float, float], envelope: Envelope | None, *, confidence: float = 0.95) -> dict:
    """Compare a scaling estimate (%/K) and its confidence interval with an envelope.

    - "inconsistent": the CI lies entirely outside the envelope (the data rule it out);
    - "consistent": the CI overlaps the envelope and excludes zero (a change is detected and
      agrees with the expectation);
    - "not detectable": the CI includes zero (the record is too short / noisy to tell);
    - "detected, no AR6 expectation": there is no envelope (AR6 gives no quantitative
      expectation for this series) and the CI excludes zero: a change is detected, but there is
      nothing to be consistent with."""
    lo, hi = (float(ci[0]), float(ci[1]))
    est = float(estimate)
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(est)):
        return {"verdict": "not detectable", "detected": False, "overlaps_envelope": None,
                "reason": "no estimate (too few data)", "envelope": envelope.to_json() if envelope else None}
    detected = not (lo <= 0 <= hi)
    if envelope is None:
        v = NO_EXPECTATION if detected else "not detectable"
        reason = ("AR6 gives no quantitative expectation for this series; "
                  + (f"a change is detected (the {confidence:.0%} CI [{lo:.2f}, {hi:.2f}] %/K excludes zero)"
                     if detected else "no change is detected at this record length"))
        return {"verdict": v, "detected": detected, "overlaps_envelope": None, "reason": reason,
                "envelope": None, "confidence": confidence}
    overlaps = (hi >= envelope.lo) and (lo <= envelope.hi)
    if not overlaps:
        v = "inconsistent"
        side = "below" if hi < envelope.lo else "above"
        reason = f"the {confidence:.0%} CI [{lo:.2f}, {hi:.2f}] %/K lies entirely {side} the envelope"
    elif detected:
        v = "consistent"
        reason = f"the {confidence:.0%} CI [{lo:.2f}, {hi:.2f}] %/K overlaps the envelope and excludes zero"
    else:
        v = "not detectable"
        reason = (f"the {confidence:.0%} CI [{lo:.2f}, {hi:.2f}] %/K overlaps the envelope but includes zero: "
                  f"the record is too short or too noisy to detect the expected change")
    return {"verdict": v, "detected": detected, "overlaps_envelope": overlaps, "reason": reason,
            "envelope": envelope.to_json(), "confidence": confidence}


#: how :func:`world_scaling_pct_per_K` samples the synthetic world
WORLD_SAMPLE = {"pixels": 400_000, "lat_max": 65.0, "land_fraction": 0.25, "seed": 0}


@functools.lru_cache(maxsize=64)
def world_scaling_pct_per_K(stat: str) -> float:
    """The synthetic world's designed scaling (%/K, compound) of an all-pixel statistic, from
    its own rules (``catalogs.simulator.climate``): pixels sampled uniformly in area within
    ±65° (the GMI's reach), a quarter of them land, at uniform times of year; each rains with the
    climatology's probability, at the regime's lognormal rate with a uniform wet rank u, scaled
    by ``intensity_factor(u, sigma, ΔT)``; the statistic at ΔT = 2 K over ΔT = 1 K. Occurrence
    does not change, so the wet fraction gives 0. It is the world's rule, not a measurement
    (the simulator's weather adds spatial structure this sample does not have): the all-pixel
    q99 comes out at ≈ 1.8 %/K, q999 at 7.0 %/K, the mean at 2.0 %/K."""
    from scipy import special

    from catalogs.simulator import climate

    w = WORLD_SAMPLE
    rng = np.random.default_rng(w["seed"])
    n = w["pixels"]
    s = np.sin(np.radians(w["lat_max"]))
    lat = np.degrees(np.arcsin(rng.uniform(-s, s, n)))
    lon = rng.uniform(-180.0, 180.0, n)
    doy = rng.uniform(0.0, 365.2425, n)
    land = (rng.random(n) < w["land_fraction"]).astype(np.float32)
    cl = climate.climatology(lat, lon, doy, land)
    wet = rng.random(n) < cl["p_wet"]
    u = rng.random(n)
    base = cl["median"] * np.exp(cl["sigma"] * special.ndtri(u))

    def value(dT):
        x = np.where(wet, base * climate.intensity_factor(u, cl["sigma"], dT), 0.0)
        lvl = quantile_level(stat)
        if lvl is not None:
            return float(np.quantile(x, lvl))
        if stat == "mean":
            return float(np.mean(x))
        if stat == "wet_fraction":
            return float(np.mean(wet))
        if stat.startswith("exceed:"):
            return float(np.mean(x >= float(stat.split(":", 1)[1])))
        raise ValueError(f"no world scaling for statistic {stat!r}")

    return float(100.0 * (value(2.0) / value(1.0) - 1.0))


def default_gmst(time) -> np.ndarray:
    """The labelled default GMST anomaly for real data (K above 1850–1900): linear, 1.09 K at
    mid-2015 (AR6 SPM A.1.2, 2011–2020 mean) rising 0.25 K/decade (Forster et al. 2024). Supply
    an observed series (e.g. HadCRUT5, Berkeley Earth) instead where you can."""
    t = np.asarray(time, dtype="datetime64[ns]")
    years = t.astype("datetime64[D]").astype(np.float64) / 365.2425 + 1970.0
    return GMST_2011_2020_K + GMST_RATE_K_PER_DECADE / 10 * (years - 2015.5)


DEFAULT_GMST_LABEL = ("raincheck default GMST: linear, 1.09 K above 1850–1900 in 2015.5 (AR6 SPM A.1.2) "
                      "+0.25 K/decade (Forster et al. 2024); not observed data")
