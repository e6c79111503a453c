"""raincheck: evaluation -- the climatological protocol (docs/evaluation.md).

Pure functions on numpy/xarray (no Panel, no app imports):

- ``regions``: global, AR6 reference regions (offline), land/ocean, latitude bands, boxes, polygons
- ``distributions``: log-binned histograms, PDFs, CDFs, quantiles, Q-Q, W1, Perkins score
- ``extremes``: exceedance curves, GPD peaks-over-threshold + bootstrap, return levels, Hill
- ``skill``: SatRain scores, categorical scores, CRPS/quantile score/PIT/coverage, FSS, effective resolution
- ``trends``: Sen slope + autocorrelation-aware Mann-Kendall, %/decade and %/K
- ``ipcc``: the AR6 envelope with sources and the verdict (consistent / inconsistent / not detectable /
  detected, no AR6 expectation)
- ``collocate``: per-orbit pixel tables of reference, truth and models
- ``cube``: the mergeable climatology cube and its dask build
- ``report``: the evaluate / trends reports (JSON) used by the CLI and the app
- ``results``: the typed results the app reads (histogram, box plan, report parts)
- ``warming``: the forced response to warming on paired counterfactual scenes (verdict per model)
"""
