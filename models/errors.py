"""The errors of the models layer, in the lowest module so every other one can import them
(:mod:`models.base` re-exports both: ``from models.base import ModelError`` keeps working)."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model cannot be used: unknown name, corrupt or unsafe checkpoint, wrong input."""


class InferenceCancelled(RuntimeError):
    """The caller's cancel flag was set; nothing was written."""
