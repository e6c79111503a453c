"""Helpers for the app tests: a synthetic orbit-like swath and a retrieval written to the store."""

from __future__ import annotations

import numpy as np
import xarray as xr

from catalogs import schema


def orbit_like_swath(n_scans=600, n_pix=61, lon0=150.0, orbit=20000, seed=0):
    """A swath along a 65°-inclined circular track starting at ``lon0`` (crosses ±180° when
    lon0 > 0), pixels spread across track; values random."""
    inc = np.radians(65.0)
    u = np.linspace(0, 2 * np.pi * n_scans / 2900, n_scans)
    lat = np.degrees(np.arcsin(np.sin(inc) * np.sin(u)))
    lon = lon0 + np.degrees(np.arctan2(np.cos(inc) * np.sin(u), np.cos(u))) - 360 * u / (2 * np.pi) * 92.6 / 1436
    off = np.linspace(-4.0, 4.0, n_pix)
    dlat = np.gradient(lat)
    dlon = np.gradient(np.degrees(np.unwrap(np.radians(lon)))) * np.cos(np.radians(lat))
    h = np.hypot(dlat, dlon)
    nx, ny = dlat / h, -dlon / h
    LAT = np.clip(lat[:, None] + off[None, :] * ny[:, None], -89, 89)
    LON = lon[:, None] + off[None, :] * nx[:, None] / np.cos(np.radians(LAT))
    LON = (LON + 180) % 360 - 180
    rng = np.random.default_rng(seed)
    tc = 200 + 50 * rng.random((n_scans, n_pix, schema.N_CHANNELS))
    rain = rng.gamma(0.3, 3.0, (n_scans, n_pix))
    ref = rain.copy()
    c = n_pix // 2
    ref[:, : c - 10] = np.nan
    ref[:, c + 11:] = np.nan
    time = np.datetime64("2019-06-01T00:00", "ns") + np.arange(n_scans) * np.timedelta64(1900, "ms")
    return schema.make_swath(tc=tc, lat=LAT, lon=LON, time=time, surface_type=np.zeros(LAT.shape, np.int8),
                             orbit_number=orbit, source="test", surface_precip=ref, surface_precip_truth=rain)


def write_retrieval(swath, model="unit-model", sha="ab" * 32, orbit=None, source="synthetic", levels=None, seed=1):
    """Write a schema-valid retrieval for ``swath`` into the model-output store; return its path."""
    from catalogs.outputs import output_path
    from catalogs.store import write_dataset
    from models.quantiles import derived_products

    orbit = int(swath.attrs["orbit_number"] if orbit is None else orbit)
    levels = np.linspace(0.05, 0.95, 19) if levels is None else np.asarray(levels)
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.3, 2.0, swath["lat"].shape)
    q = np.sort(base[..., None] * (0.2 + 2 * levels)[None, None, :], axis=-1).astype(np.float32)
    prods = derived_products(q, levels)
    ds = xr.Dataset(
        {"precip_quantiles": (("along_track", "cross_track", "quantile"), q, {"units": "mm h-1"}),
         **{k: (("along_track", "cross_track"), v, {"units": "1" if k in ("pop", "p_heavy") else "mm h-1"})
            for k, v in prods.items()}},
        coords={"lat": swath["lat"], "lon": swath["lon"], "time": swath["time"], "quantile": levels},
        attrs={"model": model, "model_sha256": sha, "orbit_number": orbit, "sensor": "GMI", "source": source})
    schema.validate(ds, kind="retrieval")
    path = output_path(model, sha, orbit, source)
    write_dataset(ds, path)
    register_card(model, sha, levels)
    return path


def register_card(model, sha, levels=(0.5,)):
    """A user model card for ``model`` with checkpoint ``sha`` in the data root (outputs are found
    by the registered card's checkpoint); shipped models keep their own card."""
    from models.registry import SHIPPED_DIR, ModelCard, user_models_dir

    if (SHIPPED_DIR / model).is_dir():
        return
    folder = user_models_dir() / model
    folder.mkdir(parents=True, exist_ok=True)
    ModelCard(name=model, kind="unet", config={}, checkpoint_sha256=sha,
              levels=[float(x) for x in levels]).save(folder)


CUBE_LEVELS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])


def cube_model(swath):
    """A stand-in retrieval for cube builds: lognormal spread around the truth, 10 % wet bias."""
    import scipy.stats

    t = swath["surface_precip_truth"].values.astype(np.float64)
    z = scipy.stats.norm.ppf(CUBE_LEVELS)
    q = (1.1 * t[..., None] * np.exp(0.4 * z)).astype(np.float32)
    return xr.Dataset({"precip_quantiles": (("along_track", "cross_track", "quantile"), q),
                       "precip_mean": (("along_track", "cross_track"), (1.1 * t * np.exp(0.08)).astype(np.float32))},
                      coords={"quantile": CUBE_LEVELS})


def small_cube(path, years=(2012, 2021), months=(1, 7), n_scans=300, model="unit-model"):
    """A small climatology cube (truth, reference and a stand-in model) over ``years``."""
    from evaluation import cube as CB

    orbits = CB.record_orbits(years=years, months=months, per_month=1)
    CB.build_cube(orbits, ["truth", "reference", model], path, scheduler="inline", n_scans=n_scans,
                  model_fns={model: cube_model})
    return path


class StandInRetriever:
    """A duck-typed per-pixel retriever for :func:`evaluation.compare.model_scores`: rain from
    the 89 GHz channel's depression, ``gain`` scales rates above ``knee`` mm h-1 (the extremes)."""

    kind = "unet"
    overlap_margin = 0
    multiple = 1

    def __init__(self, name, gain=1.0, knee=4.0, spread=0.4):
        import scipy.stats

        self.name, self.gain, self.knee, self.spread = name, gain, knee, spread
        self.levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
        self.z = scipy.stats.norm.ppf(self.levels)
        import hashlib

        self.sha256 = hashlib.sha256(repr((name, gain, knee, spread)).encode()).hexdigest()

    def predict_batch(self, x):
        import torch

        r = np.clip((280.0 - x[:, 0].numpy()) / 5.0, 0, None)
        r = np.where(r > self.knee, self.knee + self.gain * (r - self.knee), r)
        q = r[:, None] * np.exp(self.spread * self.z)[None, :, None, None]
        return torch.from_numpy(q.astype(np.float32))


def comparison_sets(n_scenes=4, along=32, cross=40, seed=0):
    """Held-out sets shaped like :func:`evaluation.compare.heldout_sets`: Tb whose 89 GHz channel
    is depressed by the rain, a reference strip, a test year and heavier-tailed future decades."""
    from evaluation.compare import PERCENTILES, _pkey

    rng = np.random.default_rng(seed)

    def scenes(scale, n):
        rain = rng.gamma(0.3, scale, (n, along, cross))
        tc = 240 + 20 * rng.random((n, along, cross, schema.N_CHANNELS))
        tc[..., 0] = 280.0 - 5.0 * rain * np.exp(rng.normal(0, 0.05, rain.shape))
        ref = rain.copy()
        ref[:, :, : cross // 4] = np.nan
        ref[:, :, 3 * cross // 4:] = np.nan
        return tc.astype(np.float32), ref.astype(np.float32)

    tr_tc, tr_ref = scenes(3.0, n_scenes)
    sets = {"thresholds": {_pkey(p): float(v) for p, v in
                           zip(PERCENTILES, np.percentile(tr_ref[np.isfinite(tr_ref)], PERCENTILES))},
            "config": "unit-compare", "key": f"unit-{seed}"}
    for split, scale, g in (("test", 3.0, 1.2), ("ood", 4.0, 2.7)):
        tc, ref = scenes(scale, n_scenes)
        sets[split] = {"tc": tc, "ref": ref, "gmst": np.full(n_scenes, g), "orbits": np.arange(n_scenes),
                       "period": {"test": "2021-01-01..2021-12-31", "ood": "2055-01-01..2059-12-31"}[split]}
    return sets


def small_comparison(seed=0, n_boot=10):
    """A real comparison result (``raincheck.compare/1``, JSON-clean) of three stand-in models:
    the reference, one with a tighter distribution and damped extremes (it meets the issue-7
    goal on these sets) and one that boosts the extremes (it does not), each scored by
    :func:`evaluation.compare.model_scores` and judged by :func:`evaluation.compare.goal_check`."""
    from evaluation.compare import SCHEMA, goal_check, model_scores
    from evaluation.report import clean

    sets = comparison_sets(seed=seed)
    models = [StandInRetriever("unit-ref"), StandInRetriever("unit-tail", gain=0.9, knee=2.0, spread=0.35),
              StandInRetriever("unit-boosted", gain=1.15)]
    res = {"schema": SCHEMA, "config": sets["config"], "reference": "unit-ref",
           "thresholds_mm_h": sets["thresholds"], "draws_per_pixel": 4,
           "periods": {k: {"period": sets[k]["period"], "scenes": len(sets[k]["tc"]),
                           "gmst_K": float(np.mean(sets[k]["gmst"]))} for k in ("test", "ood")},
           "models": {m.name: model_scores(m.name, m, sets, draws=4, seed=seed, n_boot=n_boot) for m in models}}
    res["goal"] = goal_check(res)
    return clean(res)


# -- what a user of the served app waits for (browser tests and benchmarks.bench_app) --------
#: what each view shows once answered, and whether it draws Bokeh figures (canvases)
VIEW_MARKS = {"swath": ("Click a pixel", True), "distributions": ("baseline:", True),
              "extremes": ("Tail index per source", True), "trends": ("Verdicts", True),
              "scores": ("click a column to sort", False), "warming": ("Paired counterfactual design", True)}

#: true once the page's figures are drawn: every Bokeh view has finished rendering and (when
#: ``needCanvas``) a plot's canvas is on screen (not in a hidden tab)
RENDERED_JS = """(needCanvas) => {
  if (typeof Bokeh === "undefined" || !Bokeh.index) return false;
  const roots = Bokeh.index.values ? [...Bokeh.index.values()] : Object.values(Bokeh.index);
  if (!roots.length || !roots.every(v => v.has_finished())) return false;
  if (!needCanvas) return true;
  const plots = [], seen = new Set();
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.canvas_view) plots.push(v); for (const c of (v.child_views ?? [])) walk(c); }
  roots.forEach(walk);
  return plots.some(p => { const el = p.canvas_view.el, r = el.getBoundingClientRect();
                           return el.isConnected && r.width > 0 && r.height > 0; });
}"""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def external_request(url: str) -> bool:
    """True for a request the page makes to another host than this machine (blob: and data:
    URLs are the page's own)."""
    from urllib.parse import urlparse

    u = urlparse(url)
    return u.scheme not in ("blob", "data", "about") and u.hostname not in LOCAL_HOSTS
