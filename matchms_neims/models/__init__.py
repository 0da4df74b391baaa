"""Neural network modules (``nn.Module`` only; saving and loading live in :mod:`matchms_neims.checkpoint`)."""

from matchms_neims.models.heads import BidirectionalHead
from matchms_neims.models.neims import NeimsMLP

MODEL_CLASSES = {"NeimsMLP": NeimsMLP}

__all__ = ["BidirectionalHead", "MODEL_CLASSES", "NeimsMLP"]
