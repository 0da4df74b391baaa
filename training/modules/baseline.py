"""LightningModule of the NEIMS baseline and the ``train baseline`` entry point."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from matchms_neims.featurize import Featurizer
from matchms_neims.models import get_model_class
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.cache import CacheMetadata, build_cache, read_spectra
from matchms_neims_training.data.datamodule import SpectraDataModule
from matchms_neims_training.data.decoys import DecoyBank
from matchms_neims_training.data.featurizer import make_featurizer
from matchms_neims_training.distillation.losses import (
    batch_cosine,
    decoy_margin_loss,
    in_batch_retrieval_loss,
    mass_weighted_mse,
    soft_mse_distillation_loss,
)
from matchms_neims_training.distillation.schedules import temperature_at
from matchms_neims_training.distillation.transfer import distillation_targets, uses_teacher
from matchms_neims_training.running.optim import module_optimization
from matchms_neims_training.running.runner import export, fit, initialise_from, prepare, resume_checkpoint
from matchms_neims_training.running.validation import LibraryValidationMixin, ValidationRecall

logger = logging.getLogger(__name__)


class SpectrumRegressionModule(LibraryValidationMixin, L.LightningModule):
    """Trains a fingerprint -> spectrum model (the baseline) with the mass-weighted sqrt-intensity MSE, plus
    ``optim.retrieval_weight`` times the in-batch library-search loss
    (:func:`~matchms_neims_training.distillation.losses.in_batch_retrieval_loss`), plus ``optim.decoy_weight`` times the
    margin loss against predicted decoys (:func:`~matchms_neims_training.distillation.losses.decoy_margin_loss`;
    ``decoys`` holds them).

    With a teacher (``distill.teacher``, :func:`~matchms_neims_training.distillation.transfer.uses_teacher`), the
    training loss is ``distill.alpha`` times that MSE plus ``distill.beta`` times the soft loss of the teacher's
    MC-dropout mean (:func:`~matchms_neims_training.distillation.losses.soft_mse_distillation_loss`: the same
    mass-weighted sqrt MSE, bins weighted by ``1 / (1 + teacher std)``); molecules of the transfer set
    (``distill.transfer_molecules``) count in the soft loss only. This distils a seed ensemble of the recipe into one
    model of the recipe's own size.

    Logs ``train_loss``, ``val_loss``, ``val_cosine`` (mean cosine of sqrt intensities) and ``val_recall_at_1/10``
    (library matching of the validation molecules,
    :class:`~matchms_neims_training.running.validation.ValidationRecall`); ``optim.monitor`` (``val_cosine`` by default)
    selects the checkpoint and stops early.
    """

    def __init__(self, config: dict, decoys: DecoyBank | None = None):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = TrainConfig.from_dict(config)
        self.model = get_model_class(self.config.model_class)(**self.config.model)
        self.decoys = decoys  # not saved in checkpoints: train_baseline builds it from data.decoy_molecules
        self.with_teacher = uses_teacher(self.config)
        if self.with_teacher and (self.config.distill.gamma > 0 or self.config.distill.soft_loss != "mse"):
            raise ValueError("the baseline distils the teacher's spectra with the mass-weighted MSE only; "
                             "set distill.gamma: 0 and distill.soft_loss: mse")
        self._validation = ValidationRecall(self.config)

    def forward(self, features: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        return self.model(features, nominal_mass)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        predicted = self(*batch["inputs"], batch["nominal_mass"])
        loss = mass_weighted_mse(predicted, batch["target"], self.config.optim.mass_power, batch.get("has_target"))
        batch_size = batch["target"].shape[0]
        if stage == "train" and self.with_teacher:
            loss = self._distillation_loss(predicted, batch, loss, batch_size)
        if stage == "train" and self.config.optim.retrieval_weight:
            retrieval = in_batch_retrieval_loss(predicted, batch["target"], self.config.optim.retrieval_temperature,
                                                molecule=batch.get("molecule"))
            self.log("train_retrieval_loss", retrieval, batch_size=batch_size)
            loss = loss + self.config.optim.retrieval_weight * retrieval
        if stage == "train" and self.config.optim.decoy_weight:
            decoy = self._decoy_loss(predicted, batch)
            self.log("train_decoy_loss", decoy, batch_size=batch_size)
            loss = loss + self.config.optim.decoy_weight * decoy
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        if stage == "test":
            cosine = batch_cosine(predicted, torch.sqrt(batch["target"].clamp_min(0))).mean()
            self.log("test_cosine", cosine, prog_bar=True, batch_size=batch_size, sync_dist=True)
        return loss

    def _distillation_loss(self, predicted: torch.Tensor, batch: dict, hard: torch.Tensor, batch_size: int
                           ) -> torch.Tensor:
        """``alpha * hard + beta * soft``, the soft loss against the teacher's labels (see the class docstring)."""
        distill = self.config.distill
        temperature = temperature_at(self.current_epoch, self.config.optim.max_epochs, distill.temperature_start,
                                     distill.temperature_end, distill.temperature_schedule)
        std = batch["teacher_std"] if distill.uncertainty_weighting else None
        soft = soft_mse_distillation_loss(predicted, batch["teacher_mean"], temperature, std,
                                          self.config.optim.mass_power, batch["has_teacher"])
        self.log("train_hard_loss", hard, batch_size=batch_size)
        self.log("train_soft_loss", soft, batch_size=batch_size)
        return distill.alpha * hard + distill.beta * soft

    def _decoy_loss(self, predicted: torch.Tensor, batch: dict) -> torch.Tensor:
        """The margin loss of the batch's spectra against decoys drawn near the masses of random batch rows."""
        optim = self.config.optim
        if self.decoys is None:
            raise ValueError("optim.decoy_weight needs data.decoy_molecules (a molecule file of decoys)")
        rows = torch.randperm(len(predicted))[: optim.decoys_per_batch]
        if optim.decoy_hard_k:
            features, masses = self.decoys.draw_hard(batch["index"][rows])
        else:
            features, masses = self.decoys.draw(batch["nominal_mass"][rows], optim.decoy_mass_window)
        decoy_predicted = self(features.to(predicted.device), masses.to(predicted.device))
        return decoy_margin_loss(predicted, batch["target"], decoy_predicted, optim.decoy_margin)

    def on_train_epoch_start(self) -> None:
        """Mine the hardest decoys with the current weights (``optim.decoy_hard_k``), every
        ``optim.decoy_mining_epochs`` epochs and at the first epoch of a run or a resumed run."""
        optim = self.config.optim
        if not (optim.decoy_weight and optim.decoy_hard_k and self.decoys is not None):
            return
        if self.decoys.hard is not None and self.current_epoch % max(1, optim.decoy_mining_epochs):
            return
        train = self.trainer.datamodule.datasets["train"]
        self.decoys.mine(self.model, train.indices, read_spectra(train.cache_path, train.indices),
                         optim.decoy_hard_k)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.validate_predictions(self(*batch["inputs"], batch["nominal_mass"]), batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        return module_optimization(self)


def decoy_bank(config: TrainConfig, featurizer: Featurizer) -> DecoyBank | None:
    """The decoys of ``optim.decoy_weight``'s loss (``None`` when it is off): ``data.decoy_molecules`` without the
    molecules of the cache, whatever their split."""
    if not config.optim.decoy_weight:
        return None
    if not config.data.decoy_molecules:
        raise ValueError("optim.decoy_weight needs data.decoy_molecules (a molecule file of decoys)")
    metadata = CacheMetadata(build_cache(config.data, progress=False))
    return DecoyBank(config.data.decoy_molecules, featurizer, set(metadata.columns["molecule_key"]))


def train_baseline(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train (from scratch, or fine-tune from ``init_from``), keep the best epoch by ``optim.monitor``, and export it.

    Parameters
    ----------
    config
        Training configuration (see ``training/configs/baseline.yaml``).
    resume
        Continue from ``<output_dir>/last.ckpt`` when it exists.
    progress
        Show Lightning's progress bar.

    Returns
    -------
    Path
        The exported model file (``config.export.path``).
    """
    prepare(config, "train baseline")
    featurizer = make_featurizer(config)
    soft_labels, transfer = distillation_targets(config, featurizer, progress)
    datamodule = SpectraDataModule(config.data, featurizer, soft_labels=soft_labels, transfer=transfer)
    module = SpectrumRegressionModule(config.to_dict(), decoy_bank(config, featurizer))
    if resume_checkpoint(config, resume) is None:
        for source in config.init_sources():  # fine-tuning: later files override earlier ones where names overlap
            initialise_from(module.model, source)
    best, best_path, best_score = fit(module, datamodule, config, config.optim.monitor, resume, progress)
    return export(config, best.model, featurizer,
                  {"best_epoch_checkpoint": Path(best_path).name, config.optim.monitor: best_score,
                   **({"initialised_from": config.init_from} if config.init_from else {}),
                   **({"teacher": config.distill.teacher, "transfer_molecules": len(transfer) if transfer else 0}
                      if soft_labels is not None else {})})
