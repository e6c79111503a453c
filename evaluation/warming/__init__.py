"""The forced-response evaluation (issue 14): paired counterfactual scenes (the same weather in
warmer climates), every model's response to warming against the truth's on the same scenes, with
a paired scene bootstrap and a verdict per model × statistic × level × group.

- ``summary``: mergeable per-scene summaries (counts, sums, exceedances, fine log histograms)
- ``response``: statistics, the %/K response, the bootstrap, verdicts, :class:`ForcedResponse`
- ``run``: the scene design, the resumable per-scene store and the driver (dask or inline)
- ``table``: the forced response beside present-climate CRPS (Model comparison view, model cards)
- ``ood``: does an OOD score flag the pixels and scenes with the largest forced error (AUROC)

See docs/evaluation.md, "Forced response".
"""

from evaluation.warming.response import (COLUMNS, KIND, REFERENCE_MODEL, SCHEMA_VERSION, VERDICTS, VERSUS_COLUMNS,
                                         ForcedResponse, compute_response, load_results, verdict)
from evaluation.warming.ood import WarmingOOD, run_warming_ood
from evaluation.warming.run import (PRODUCTS, ModelRunFailed, WarmingCancelled, check_levels, plan_scenes,
                                    run_forced_response, training_climate_K)

__all__ = ["COLUMNS", "KIND", "REFERENCE_MODEL", "SCHEMA_VERSION", "VERDICTS", "VERSUS_COLUMNS", "ForcedResponse",
           "compute_response", "load_results", "verdict", "PRODUCTS", "ModelRunFailed", "WarmingCancelled",
           "check_levels", "plan_scenes", "run_forced_response", "training_climate_K", "WarmingOOD", "run_warming_ood"]
