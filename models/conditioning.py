"""The climate input of GMST-conditioned models (``conditioning: {gmst: true}``).

A conditioned model gets, besides the Tb, the global-mean surface temperature anomaly ΔT (K,
relative to 1850-1900) of the climate a scene comes from. Where it comes from:

* **synthetic swaths** (``catalogs.simulator``): the swath attribute ``gmst_anomaly_K``, the
  synthetic world's own GMST of the orbit (for the simulated source it already includes
  ``climate_offset_K``);
* **swaths without that attribute** (real granules): the *default series*
  :data:`DEFAULT_GMST_SERIES`, evaluated at the middle of the swath's time. It is the synthetic
  scenario's :func:`catalogs.simulator.climate.gmst_anomaly`: the smoothed observed path
  (IPCC AR6 WG1 SPM A.1.2; Forster et al. 2024) to 2025, then SSP2-4.5 best estimates (AR6 WG1
  Table SPM.1). It is a smooth multi-year estimate, not the observed anomaly of that year (no
  El Niño years), and it is labelled as such in every output;
* scene sets of the training cache: recomputed from the scene's orbit, source and
  ``climate_offset_K`` exactly as the simulator computes the attribute (:func:`orbit_gmst`).

It is never silently zero: a conditioned model refuses a batch without ΔT, and
:func:`models.inference.predict_swath` records the value and its origin in the output attributes
``gmst_anomaly_K_used`` and ``gmst_anomaly_source``.
"""

from __future__ import annotations

import json

import numpy as np

from catalogs.store import open_dataset
from models.errors import ModelError

#: label of the default series used where a swath carries no ``gmst_anomaly_K`` attribute
DEFAULT_GMST_SERIES = ("default GMST series: catalogs.simulator.climate.gmst_anomaly (smoothed observed "
                       "path to 2025 per IPCC AR6 WG1 SPM A.1.2 / Forster et al. 2024, then SSP2-4.5 AR6 "
                       "Table SPM.1; K above 1850-1900; not the observed anomaly of the year)")
SWATH_ATTRIBUTE = "swath attribute gmst_anomaly_K"


def default_gmst(time) -> float:
    """ΔT (K) of the default series at ``time`` (datetime64 or an array of them: their middle)."""
    from catalogs.simulator.climate import gmst_anomaly

    t = np.asarray(time, dtype="datetime64[ns]").ravel()
    t = t[~np.isnat(t)]
    if t.size == 0:
        raise ModelError("cannot choose a GMST anomaly: the swath has no valid time")
    mid = t.min() + (t.max() - t.min()) // 2
    return float(gmst_anomaly(mid))


def swath_gmst(swath) -> tuple[float, str]:
    """``(ΔT in K, where it came from)`` for a canonical swath: its ``gmst_anomaly_K``
    attribute if present, else the labelled default series at the swath's middle time."""
    v = swath.attrs.get("gmst_anomaly_K")
    if v is not None:
        v = float(np.asarray(v).ravel()[0])
        if not np.isfinite(v):
            raise ModelError(f"swath attribute gmst_anomaly_K is not finite ({v})")
        return v, SWATH_ATTRIBUTE
    if "time" not in swath.coords and "time" not in swath:
        raise ModelError("cannot choose a GMST anomaly: the swath has neither gmst_anomaly_K nor a time")
    return default_gmst(swath["time"].values), DEFAULT_GMST_SERIES


def orbit_gmst(orbit: int, source: str = "observed", climate_offset_K: float | None = None) -> float:
    """The ``gmst_anomaly_K`` attribute the simulator gives orbit ``orbit`` of ``source``
    (GMST of the orbit's middle time plus the simulated source's climate offset)."""
    from catalogs.simulator import orbit_gmst_anomaly

    return orbit_gmst_anomaly(int(orbit), source, climate_offset_K)


def scene_gmst(path) -> np.ndarray:
    """(N,) ΔT (K) of the scenes of a cached scene set (:func:`models.train.build_training_set`),
    from each scene's orbit and the set's data config (source, ``climate_offset_K`` and the
    counterfactual ``warming_K`` of a paired set, as the simulator's ``gmst_anomaly_K`` attribute)."""
    ds = open_dataset(path)
    data_cfg = json.loads(ds.attrs.get("data_config", "{}"))
    source = data_cfg.get("source", "observed")
    off = data_cfg.get("climate_offset_K")
    off = None if off is None else float(off)
    warming = float(data_cfg.get("warming_K") or 0.0)
    return np.array([orbit_gmst(int(o), source, off) + warming for o in ds["orbit"].values], np.float64)
