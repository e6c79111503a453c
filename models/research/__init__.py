"""Research models (issue 7): tail-sensitive losses, hybrid observed + simulated training,
residual flow matching ensembles and out-of-distribution scores.

- :mod:`models.research.trainer` -- config-driven training of the research U-Nets (plug-ins of the
  one loop in :mod:`models.training`: loss, mixed sources, conditioning, fine-tuning from a
  registered model) and of the flow model;
- :mod:`models.research.hybrid` -- the simulated-source scene sets and their Tb bias correction;
- :mod:`models.research.flow` -- the residual conditional flow-matching model and its retriever;
- :mod:`models.research.ood` -- Mahalanobis OOD scores on U-Net encoder features.

Research models load like any model, with :func:`models.registry.load_model` (it knows the
``flow`` kind). The package imports nothing itself: the registry imports
:mod:`models.research.flow`, so a name here from the registry would be an import cycle (the old
second loader ``load_research_model`` is gone for that reason).
"""
