"""Fine-tuning the teacher (``matchms-neims train teacher``): graph + ECFP -> spectrum, selected by Recall@10.

The loss is the mass-weighted sqrt-intensity MSE plus ``masking.lambda_bond`` times the bond-masking
loss of :mod:`matchms_neims_training.modules.pretrain`. After every validation epoch the validation spectra are searched
against a library of the experimental spectra of all other molecules plus the predicted spectra of
the validation molecules (the NEIMS protocol of ``matchms-neims evaluate``), and ``val_recall_at_10``
drives checkpoint selection and early stopping.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.augment import SpectrumAugmenter
from matchms_neims_training.data.datamodule import SpectraDataModule
from matchms_neims_training.data.featurizer import make_featurizer
from matchms_neims_training.distillation.losses import bond_masking_loss, mass_weighted_mse, sample_bond_mask
from matchms_neims_training.running.optim import module_optimization
from matchms_neims_training.running.runner import export, fit, initialise_from, prepare, resume_checkpoint
from matchms_neims_training.running.validation import LibraryValidationMixin, ValidationRecall

logger = logging.getLogger(__name__)


class TeacherModule(LibraryValidationMixin, L.LightningModule):
    """Trains :class:`matchms_neims.models.teacher.TeacherGNN` on spectra.

    Logs ``train_loss`` (and ``train_bond_loss`` when ``masking.lambda_bond > 0``), ``val_loss``,
    ``val_cosine``, ``val_recall_at_1`` and ``val_recall_at_10``.
    """

    def __init__(self, config: dict):
        super().__init__()
        from matchms_neims.models.teacher import TeacherGNN

        self.save_hyperparameters({"config": config})
        self.config = TrainConfig.from_dict(config)
        self.model = TeacherGNN(**self.config.model)
        self._validation = ValidationRecall(self.config)

    def forward(self, graph, ecfp, nominal_mass):
        return self.model(graph, ecfp, nominal_mass)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        graph, ecfp = batch["inputs"]
        predicted = self.model(graph, ecfp, batch["nominal_mass"])
        loss = mass_weighted_mse(predicted, batch["target"], self.config.optim.mass_power)
        size = batch["target"].shape[0]
        masking = self.config.masking
        if masking.lambda_bond > 0:
            mask = sample_bond_mask(graph.edge_index, masking.fraction)
            bond_loss, _ = bond_masking_loss(self.model.masked_bond_predictions(graph, mask), graph, mask,
                                             masking.length_weight)
            self.log("train_bond_loss", bond_loss, batch_size=size)
            loss = loss + masking.lambda_bond * bond_loss
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        graph, ecfp = batch["inputs"]
        predicted = self.model(graph, ecfp, batch["nominal_mass"])
        self.validate_predictions(predicted, batch)

    def configure_optimizers(self):
        return module_optimization(self)


def train_teacher(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Fine-tune the teacher (from ``config.init_from`` or from scratch) and export the best epoch.

    Returns
    -------
    Path
        The exported model file (``config.export.path``).
    """
    prepare(config, "train teacher", "TeacherGNN")
    featurizer = make_featurizer(config)
    if featurizer.kind not in ("graph_ecfp", "graph_ecfp_counts"):
        raise ValueError(f"the teacher reads featurizer.kind graph_ecfp or graph_ecfp_counts, got {featurizer.kind!r}")
    augmenter = SpectrumAugmenter.from_config(config.augment)
    datamodule = SpectraDataModule(config.data, featurizer, augmenter)
    module = TeacherModule(config.to_dict())
    if resume_checkpoint(config, resume) is None:
        for source in config.init_sources():  # later files override earlier ones where names overlap
            initialise_from(module.model, source)
    monitor = config.optim.monitor
    best, best_path, best_score = fit(module, datamodule, config, monitor, resume, progress)
    return export(config, best.model, featurizer, {
        "best_epoch_checkpoint": Path(best_path).name, monitor: best_score,
        "initialised_from": config.init_from or None, "mc_dropout_samples": 30})
