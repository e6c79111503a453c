"""The U-Net training loop, one for every U-Net config (issue 13).

- :mod:`models.training.common` -- small shared pieces (padding, optimiser step, seeds, progress);
- :mod:`models.training.data` -- the cached scene sets (``build_training_set``, ``load_scenes``);
- :mod:`models.training.scoring` -- scores on the held-out splits and the model card of a run;
- :mod:`models.training.state` -- the resumable training state and the checkpoint writer;
- :mod:`models.training.plugins` -- what differs between configs, as plug-ins: the loss
  (:class:`PinballLoss` or the research losses), the batch source (:class:`ShuffledScenes` or
  :class:`MixedScenes`: a subset per epoch, simulated scenes mixed in) and the conditioning
  (:class:`GmstConditioning`: the scene's GMST anomaly as an input);
- :mod:`models.training.loop` -- :func:`train_unet`, the loop (normalisation or ``init_from``,
  AdamW + OneCycle, crop, flips, best-validation checkpoint, resume, stop for time).

The defaults of every key are in :mod:`models.config` (:class:`models.config.TrainingConfig`).
Entry points stay :func:`models.train.train` and :func:`models.research.trainer.train_research`.
"""

from models.training.common import TrainingCancelled
from models.training.loop import train_unet

__all__ = ["TrainingCancelled", "train_unet"]
