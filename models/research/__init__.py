"""Research models (issue 7): tail-sensitive losses, hybrid observed + simulated training,
residual flow matching ensembles and out-of-distribution scores.

- :mod:`models.research.trainer` -- config-driven training of the research U-Nets (pluggable loss,
  sample weights, mixed sources, fine-tuning from a registered model) and of the flow model;
- :mod:`models.research.hybrid` -- the simulated-source scene sets, their Tb bias correction and
  the mixed batch sampler;
- :mod:`models.research.flow` -- the residual conditional flow-matching model and its retriever;
- :mod:`models.research.ood` -- Mahalanobis OOD scores on U-Net encoder features.

:func:`load_research_model` loads any registered model, including kinds the core registry does
not know yet (``flow``).
"""

from __future__ import annotations

from models.base import ModelError, Retriever

RESEARCH_KINDS = ("flow",)


def retriever_for(card, tensors) -> Retriever:
    """A retriever for a card of a research kind (``flow``)."""
    if card.kind == "flow":
        from models.research.flow import FlowRetriever

        return FlowRetriever(card, tensors)
    raise ModelError(f"model {card.name!r} has unknown research kind {card.kind!r}")


def load_research_model(name: str, device=None) -> Retriever:
    """Like :func:`models.registry.load_model`, also for the research kinds."""
    from models.registry import get_card, load_checkpoint, load_model

    card = get_card(name)
    if card.kind not in RESEARCH_KINDS:
        return load_model(name, device=device)
    tensors = load_checkpoint(card.weights_path, expected_sha256=card.checkpoint_sha256)
    r = retriever_for(card, tensors)
    if device is not None:
        from models.inference import choose_device

        r = r.to(choose_device(str(device)))
    return r
