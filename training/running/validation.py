"""Per-epoch validation library matching (``val_recall_at_k``), shared by the teacher and student training."""

from __future__ import annotations

import numpy as np
import torch

from matchms_neims.evaluation import SpectraSet, matching_library
from matchms_neims.metrics import library_ranks, recall_at_k
from matchms_neims_training.commands.evaluate import split_sets
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.datamodule import SpectraDataModule


def validation_recall(datamodule: SpectraDataModule, rows: np.ndarray, predicted: np.ndarray, true: np.ndarray,
                      background: SpectraSet, ks: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """Library-matching recall of validation rows (NEIMS protocol, as ``matchms-neims evaluate --split val``).

    The library (:func:`matchms_neims.evaluation.matching_library`) holds ``background`` (experimental
    spectra of the other splits) and one predicted spectrum per validation structure; the queries are
    the rows' experimental spectra.
    """
    columns = datamodule.metadata.columns
    keys = list(columns["molecule_key"][rows])
    library, library_keys, _, _ = matching_library(predicted, keys, list(columns["smiles"][rows]), background)
    return recall_at_k(library_ranks(true, keys, library, library_keys), ks)


class ValidationRecall:
    """Collects a validation epoch's predictions and scores them by library matching.

    Call :meth:`reset` at the start of the epoch, :meth:`add` in every validation step and
    :meth:`compute` at its end (predictions of all DDP ranks are gathered).
    """

    def __init__(self, config: TrainConfig, ks: tuple[int, ...] = (1, 10)):
        self.config = config
        self.ks = ks
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._background: SpectraSet | None = None

    def reset(self) -> None:
        self._parts = []

    def add(self, index: torch.Tensor, predicted_sqrt: torch.Tensor, target: torch.Tensor) -> None:
        self._parts.append((index.cpu().numpy(), predicted_sqrt.detach().float().cpu().numpy(),
                            target.float().cpu().numpy()))

    def compute(self, datamodule: SpectraDataModule | None) -> dict[str, float] | None:
        """``{"recall@k": ...}`` over everything added since :meth:`reset`, or ``None`` when there is nothing."""
        parts = self._parts
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, parts)
            parts = [part for rank_parts in gathered for part in rank_parts]
        self._parts = []
        if not parts or datamodule is None:
            return None
        rows = np.concatenate([p[0] for p in parts])
        rows, first = np.unique(rows, return_index=True)  # DDP samplers may pad with repeats
        predicted = np.concatenate([p[1] for p in parts])[first]
        true = np.concatenate([p[2] for p in parts])[first]
        if self._background is None:  # experimental spectra of the other splits, read once
            self._background = split_sets(self.config, "val")[1]
        return validation_recall(datamodule, rows, np.square(predicted.clip(min=0)), true, self._background, self.ks)


class LibraryValidationMixin:
    """LightningModule mixin: ``val_loss`` and ``val_cosine`` per batch, ``val_recall_at_1/10`` per epoch.

    The module sets ``self.config`` and ``self._validation = ValidationRecall(self.config)`` and calls
    :meth:`validate_predictions` from its ``validation_step``; list the mixin before
    ``lightning.LightningModule`` so its epoch hooks are the ones that run.
    """

    def validate_predictions(self, predicted: torch.Tensor, batch: dict) -> None:
        from matchms_neims_training.distillation.losses import batch_cosine, mass_weighted_mse

        target = batch["target"]
        size = target.shape[0]
        self.log("val_loss", mass_weighted_mse(predicted, target, self.config.optim.mass_power), batch_size=size,
                 sync_dist=True)
        self.log("val_cosine", batch_cosine(predicted, torch.sqrt(target.clamp_min(0))).mean(), prog_bar=True,
                 batch_size=size, sync_dist=True)
        self._validation.add(batch["index"], predicted, target)

    def on_validation_epoch_start(self) -> None:
        self._validation.reset()

    def on_validation_epoch_end(self) -> None:
        recall = self._validation.compute(self.trainer.datamodule)
        if recall is not None:
            for k in (1, 10):
                self.log(f"val_recall_at_{k}", recall[f"recall@{k}"], prog_bar=k == 10, sync_dist=False)
