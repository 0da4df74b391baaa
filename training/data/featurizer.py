"""The featurizer a training config names (its ``featurizer`` section and the data's m/z range)."""

from __future__ import annotations

from matchms_neims.featurize import Featurizer
from matchms_neims_training.config import TrainConfig


def make_featurizer(config: TrainConfig) -> Featurizer:
    """The :class:`~matchms_neims.featurize.Featurizer` of ``config`` (kind, bits, radius, counts, formula)."""
    f = config.featurizer
    return Featurizer(kind=f.kind, max_mz=config.data.max_mz, n_bits=f.n_bits, radius=f.radius,
                      n_count_bits=f.n_count_bits, formula=f.formula)
