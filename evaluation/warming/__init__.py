"""The forced-response evaluation (issue 14): paired counterfactual scenes (the same weather in
warmer climates), every model's response to warming against the truth's on the same scenes, with
a paired scene bootstrap and a verdict per model × statistic × level × group.

- ``summary``: mergeable per-scene summaries (counts, sums, exceedances, fine log histograms)
- ``response``: statistics, the %/K response, the bootstrap, verdicts, :class:`ForcedResponse`
- ``run``: the scene design, the resumable per-scene store and the driver (dask or inline)

See docs/evaluation.md, "Forced response".
"""

from evaluation.warming.response import (COLUMNS, KIND, SCHEMA_VERSION, VERDICTS, ForcedResponse, compute_response,
                                         load_results, verdict)
from evaluation.warming.run import (ModelRunFailed, WarmingCancelled, check_levels, plan_scenes, run_forced_response,
                                    training_climate_K)

__all__ = ["COLUMNS", "KIND", "SCHEMA_VERSION", "VERDICTS", "ForcedResponse", "compute_response", "load_results",
           "verdict", "ModelRunFailed", "WarmingCancelled", "check_levels", "plan_scenes", "run_forced_response",
           "training_climate_K"]
