"""Distilling the student (``matchms-neims train student``): mixture-of-experts MLP taught by the teacher.

Loss per training step::

    alpha * hard + beta * soft + gamma * feature + balance_weight * switch_balance + entropy_weight * entropy

* hard: mass-weighted sqrt-intensity MSE against the experimental spectrum;
* soft: KL (``distill.soft_loss: kl``) or mass-weighted MSE (``mse``) of the tempered, LDS-smoothed teacher MC
  mean and the student, per-bin weights ``1 / (1 + teacher std)``, times ``T ** 2`` (temperature schedule
  ``temperature_start`` -> ``temperature_end``);
* feature: MSE between a learnt projection of the student's ``hidden`` features and the teacher's
  ``ecfp_embedding``.

With ``distill.transfer_molecules`` (:mod:`matchms_neims_training.distillation.transfer`), molecules without spectra
labelled by the teacher join the training split; they count in the soft and feature losses, not in the hard loss.

Each of the three is divided by its value at the first training step (kept in the checkpoint), so
alpha/beta/gamma are relative shares rather than compensations for the losses' different units. They
stay fixed for ``weight_warmup_epochs`` and are then adapted by GradNorm (on the ``hidden`` features,
ratios bounded). The gate's balancing bias is updated after every step; the expert usage is logged
per epoch and a collapse is reported as a warning. Checkpoints are selected by ``val_recall_at_10``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from matchms_neims.chemistry import parse_smiles
from matchms_neims.models.student import StudentMoE, expert_load
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.augment import SpectrumAugmenter
from matchms_neims_training.data.cache import CacheMetadata, build_cache
from matchms_neims_training.data.datamodule import SpectraDataModule
from matchms_neims_training.data.featurizer import make_featurizer
from matchms_neims_training.distillation.expert_groups import EXPERT_GROUPS, initialise_gate, molecule_group
from matchms_neims_training.distillation.gradnorm import GradNormWeights
from matchms_neims_training.distillation.losses import (
    feature_distillation_loss,
    mass_weighted_mse,
    routing_entropy,
    soft_distillation_loss,
    soft_mse_distillation_loss,
    switch_balance_loss,
    weight_balance_loss,
)
from matchms_neims_training.distillation.schedules import temperature_at
from matchms_neims_training.distillation.transfer import distillation_targets, uses_teacher
from matchms_neims_training.running.optim import module_optimization
from matchms_neims_training.running.runner import export, fit, prepare, resume_checkpoint
from matchms_neims_training.running.validation import LibraryValidationMixin, ValidationRecall

logger = logging.getLogger(__name__)

LOSS_NAMES = ("hard", "soft", "feature")
SOFT_LOSSES = ("kl", "mse")


class StudentModule(LibraryValidationMixin, L.LightningModule):
    """Trains :class:`matchms_neims.models.student.StudentMoE`, with or without a teacher's soft labels.

    Logs ``train_loss``, ``train_hard_loss``, ``train_soft_loss``, ``train_feature_loss``, the loss
    weights, ``train_temperature``, ``train_expert_usage_<e>``; ``val_loss``, ``val_cosine``,
    ``val_recall_at_1`` and ``val_recall_at_10``.
    """

    def __init__(self, config: dict, feature_size: int = 512):
        super().__init__()
        self.save_hyperparameters({"config": config, "feature_size": feature_size})
        self.config = TrainConfig.from_dict(config)
        self.model = StudentMoE(**self.config.model)
        distill = self.config.distill
        if distill.soft_loss not in SOFT_LOSSES:
            raise ValueError(f"distill.soft_loss must be one of {SOFT_LOSSES}, not {distill.soft_loss!r}")
        self.with_teacher = uses_teacher(self.config)
        if self.with_teacher and distill.gamma > 0 and feature_size == 0:
            raise ValueError("the teacher gives no embedding for the feature loss (a baseline MLP or its ensemble); "
                             "set distill.gamma: 0")
        if self.with_teacher:
            shares = {"hard": distill.alpha, "soft": distill.beta, "feature": distill.gamma}
        else:
            shares = {"hard": 1.0}
        self.loss_names = [name for name in LOSS_NAMES if shares.get(name, 0) > 0]
        self.gradnorm = GradNormWeights([shares[name] for name in self.loss_names], distill.gradnorm_alpha,
                                        distill.gradnorm_lr, tuple(distill.weight_ratio_bounds))
        width = self.model.final_norm.normalized_shape[0]
        self.feature_projection = nn.Linear(width, feature_size) if "feature" in self.loss_names else None
        self.register_buffer("loss_scales", torch.zeros(len(self.loss_names)))
        self._validation = ValidationRecall(self.config)

    def forward(self, fingerprint: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        return self.model(fingerprint, nominal_mass)

    def temperature(self) -> float:
        distill = self.config.distill
        return temperature_at(self.current_epoch, self.config.optim.max_epochs, distill.temperature_start,
                              distill.temperature_end, distill.temperature_schedule)

    def _losses(self, batch: dict, output) -> dict[str, torch.Tensor]:
        distill = self.config.distill
        losses = {"hard": mass_weighted_mse(output.spectrum, batch["target"], self.config.optim.mass_power,
                                            batch.get("has_target"))}
        if "soft" in self.loss_names:
            std = batch["teacher_std"] if distill.uncertainty_weighting else None
            if distill.soft_loss == "mse":
                losses["soft"] = soft_mse_distillation_loss(output.spectrum, batch["teacher_mean"], self.temperature(),
                                                            std, self.config.optim.mass_power, batch["has_teacher"])
            else:
                losses["soft"] = soft_distillation_loss(output.spectrum, batch["teacher_mean"], self.temperature(),
                                                        std, batch["has_teacher"])
        if "feature" in self.loss_names:
            losses["feature"] = feature_distillation_loss(self.feature_projection(output.hidden),
                                                          batch["teacher_embedding"], batch["has_teacher"])
        return {name: losses[name] for name in self.loss_names}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        distill = self.config.distill
        (fingerprint,) = batch["inputs"]
        output = self.model.forward_with_details(fingerprint, batch["nominal_mass"])
        losses = self._losses(batch, output)
        values = torch.stack([loss.detach().float() for loss in losses.values()])
        if not bool((self.loss_scales > 0).all()):  # first step: the units of each loss
            self.loss_scales.copy_(values.clamp_min(1e-12))
        scaled = [loss / scale for loss, scale in zip(losses.values(), self.loss_scales)]
        adapting = distill.gradnorm and len(scaled) > 1 and self.current_epoch >= distill.weight_warmup_epochs
        weights = self.gradnorm.update(scaled, output.hidden) if adapting else self.gradnorm.weights
        loss = sum(float(weight) * value for weight, value in zip(weights, scaled))
        if self.model.n_experts > 1:
            loss = loss + distill.balance_weight * switch_balance_loss(output.gate_probabilities,
                                                                       output.selected_experts)
            loss = loss + distill.entropy_weight * routing_entropy(output.gate_probabilities)
            if distill.weight_balance_weight:
                loss = loss + distill.weight_balance_weight * weight_balance_loss(output.expert_weights)
        load = expert_load(output.selected_experts, self.model.n_experts)
        self.model.update_gate_bias(load)
        size = fingerprint.shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        for (name, value), weight in zip(losses.items(), weights):
            self.log(f"train_{name}_loss", value, batch_size=size)
            self.log(f"train_weight_{name}", float(weight), batch_size=size)
        if self.with_teacher and "soft" in self.loss_names:
            self.log("train_temperature", self.temperature(), batch_size=size)
        for expert, share in enumerate(load.tolist()):
            self.log(f"train_expert_usage_{expert}", share, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def on_train_epoch_end(self) -> None:
        low, high = self.config.distill.usage_bounds
        metrics = self.trainer.callback_metrics
        usage = [float(metrics[f"train_expert_usage_{e}"]) for e in range(self.model.n_experts)
                 if f"train_expert_usage_{e}" in metrics]
        if len(usage) > 1 and (min(usage) < low or max(usage) > high):  # one expert takes all by design
            logger.warning("epoch %d: expert collapse, usage %s outside [%.2f, %.2f]", self.current_epoch,
                           " ".join(f"{u:.3f}" for u in usage), low, high)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        (fingerprint,) = batch["inputs"]
        predicted = self.model(fingerprint, batch["nominal_mass"])
        self.validate_predictions(predicted, batch)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gradnorm"] = self.gradnorm.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "gradnorm" in checkpoint:
            self.gradnorm.load_state_dict(checkpoint["gradnorm"])

    def configure_optimizers(self):
        return module_optimization(self)


def seed_expert_groups(model: StudentMoE, config: TrainConfig, featurizer, progress: bool = True) -> float:
    """Initialise the gate from the chemical groups of the training molecules (see
    :mod:`matchms_neims_training.distillation.expert_groups`)."""
    metadata = CacheMetadata(build_cache(config.data, progress=progress))
    smiles = sorted(set(metadata.columns["smiles"][metadata.indices("train")]))
    fingerprints, groups = [], []
    for item in tqdm(smiles, desc="expert groups", unit="molecules", disable=not progress):
        mol = parse_smiles(item)
        fingerprints.append(featurizer.features_of_mol(mol))
        groups.append(molecule_group(mol))
    counts = np.bincount(groups, minlength=len(EXPERT_GROUPS))
    logger.info("expert groups of %d training molecules: %s", len(smiles),
                ", ".join(f"{name} {count}" for name, count in zip(EXPERT_GROUPS, counts)))
    with torch.no_grad():
        inputs = model.transform_input(torch.from_numpy(np.stack(fingerprints).astype(np.float32)))
    accuracy = initialise_gate(model.gate, inputs, np.asarray(groups), model.n_experts,
                               steps=config.distill.gate_init_steps, seed=config.trainer.seed)
    logger.info("gate initialised from the groups: %.3f of the training molecules route to their group's expert",
                accuracy)
    return accuracy


def train_student(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Distil the student from the teacher's cached soft labels (or train it alone) and export the best epoch.

    Returns
    -------
    Path
        The exported model file (``config.export.path``).
    """
    prepare(config, "train student", "StudentMoE")
    featurizer = make_featurizer(config)
    if featurizer.kind != "student_fingerprint":
        raise ValueError(f"the student reads featurizer.kind student_fingerprint, got {featurizer.kind!r}")
    soft_labels, transfer = distillation_targets(config, featurizer, progress)
    feature_size = soft_labels.embedding_size if soft_labels is not None else 512
    augmenter = SpectrumAugmenter.from_config(config.augment)
    datamodule = SpectraDataModule(config.data, featurizer, augmenter, soft_labels, transfer)
    module = StudentModule(config.to_dict(), feature_size)
    resuming = resume_checkpoint(config, resume) is not None
    if config.distill.gate_init_steps > 0 and module.model.n_experts > 1 and not resuming:
        seed_expert_groups(module.model, config, featurizer, progress)
    best, best_path, best_score = fit(module, datamodule, config, config.optim.monitor, resume, progress)
    return export(config, best.model, featurizer, {
        "best_epoch_checkpoint": Path(best_path).name, config.optim.monitor: best_score,
        "teacher": config.distill.teacher if uses_teacher(config) else None,
        "transfer_molecules": len(transfer) if transfer is not None else 0,
        "loss_weights": dict(zip(best.loss_names, best.gradnorm.weights.tolist()))})
