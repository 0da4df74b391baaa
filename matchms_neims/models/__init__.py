"""Neural network modules (``nn.Module`` only; saving and loading live in :mod:`matchms_neims.checkpoint`)."""

from matchms_neims.models.heads import BidirectionalHead
from matchms_neims.models.neims import NeimsMLP

#: Models that NeimsPredictor can feed (fingerprint input). ``matchms_neims.models.teacher.TeacherGNN`` (imported
#: on demand: torch_geometric adds about a second to start-up) joins once the predictor batches graphs.
MODEL_CLASSES = {"NeimsMLP": NeimsMLP}

__all__ = ["BidirectionalHead", "MODEL_CLASSES", "NeimsMLP"]
