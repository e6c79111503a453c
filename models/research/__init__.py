"""Research models (issue 7): tail-sensitive losses, hybrid observed + simulated training,
residual flow matching ensembles and out-of-distribution scores.

- :mod:`models.research.trainer` -- config-driven training of the research U-Nets (plug-ins of the
  one loop in :mod:`models.training`: loss, mixed sources, conditioning, fine-tuning from a
  registered model) and of the flow model;
- :mod:`models.research.hybrid` -- the simulated-source scene sets and their Tb bias correction;
- :mod:`models.research.flow` -- the residual conditional flow-matching model and its retriever;
- :mod:`models.research.ood` -- Mahalanobis OOD scores on U-Net encoder features.

Research models load like any model, with :func:`models.registry.load_model` (it knows the
``flow`` kind); ``load_research_model`` is kept as another name for it.
"""

from __future__ import annotations

from models.registry import load_model

#: the old name of :func:`models.registry.load_model` (which loads every kind, ``flow`` included)
load_research_model = load_model
