"""``matchms-neims ensemble``: combine trained model files of one class into one ensemble model file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.models.ensemble import SpectrumEnsemble, TeacherEnsemble
from matchms_neims.utils import file_sha256
from matchms_neims_training.running.runner import training_command

logger = logging.getLogger(__name__)

#: Member metadata that must agree: members trained on different data or splits would leak test molecules.
SHARED_METADATA = ("training_data", "split")
#: Model classes that can be ensemble members.
MEMBER_CLASSES = ("TeacherGNN", "NeimsMLP")


def build_ensemble(members: Sequence[str], output: str, weights: Sequence[float] | None = None,
                   name: str = "neims-teacher-ensemble", version: str = "0.1.0", average: str | None = None,
                   half_precision: bool | None = None) -> Path:
    """Write an ensemble of trained model files of one class.

    Teachers (``TeacherGNN``) become a :class:`TeacherEnsemble`, which distillation can read; baseline MLPs
    (``NeimsMLP``) a :class:`SpectrumEnsemble`.

    Parameters
    ----------
    members
        Model files of one class of :data:`MEMBER_CLASSES`, with the same featurizer, data and split.
    output
        Model file to write (atomically).
    weights
        Weight of each member (default: equal).
    name, version
        Recorded in the model file's metadata.
    average
        ``"sqrt"`` or ``"intensity"`` (:mod:`matchms_neims.models.ensemble`); by default ``"intensity"`` for
        members with a formula head (their isotope envelopes stay exact), else ``"sqrt"``. Teacher ensembles
        average in sqrt space.
    half_precision
        Store the weights as float16. By default they are when that loses nothing: when every member's weights
        are float16 values (files the training command exported with ``export.half_precision``).

    Returns
    -------
    Path
        The written model file.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two member files, got {len(members)}")
    loaded = [load_model(path) for path in members]
    member_class = loaded[0].model_class
    if member_class not in MEMBER_CLASSES:
        raise ValueError(f"{members[0]} is a {member_class}; ensemble members must be one of {MEMBER_CLASSES}")
    for path, model in zip(members, loaded):
        if model.model_class != member_class:
            raise ValueError(f"{path} is a {model.model_class}; ensemble members must be {member_class} models, "
                             f"as {members[0]} is (one class per ensemble)")
        if model.featurizer.to_config() != loaded[0].featurizer.to_config():
            raise ValueError(f"{path} reads featurizer {model.featurizer.to_config()}, {members[0]} reads "
                             f"{loaded[0].featurizer.to_config()}; ensemble members must share one featurizer")
        for key in SHARED_METADATA:
            if model.metadata.get(key) != loaded[0].metadata.get(key):
                raise ValueError(f"{path} was trained with {key} {model.metadata.get(key)!r}, {members[0]} with "
                                 f"{loaded[0].metadata.get(key)!r}; ensemble members must share data and split")
    config: dict = {"members": [model.model_config for model in loaded]}
    if weights is not None:
        config["weights"] = [float(weight) for weight in weights]
    if member_class == "TeacherGNN":
        if average not in (None, "sqrt"):
            raise ValueError(f"a teacher ensemble averages sqrt spectra, got average={average!r}")
        ensemble_class, ensemble = "TeacherEnsemble", TeacherEnsemble(**config)
    else:
        if average is None:
            average = "intensity" if loaded[0].model.formula_head is not None else "sqrt"
        config.update(member_class=member_class, average=average)
        ensemble_class, ensemble = "SpectrumEnsemble", SpectrumEnsemble(**config)
    for member, model in zip(ensemble.members, loaded):
        member.load_state_dict(model.model.state_dict())
    metadata = {
        "name": name,
        "version": version,
        "model_class": ensemble_class,
        "training_command": training_command(),
        **{key: loaded[0].metadata.get(key) for key in SHARED_METADATA},
        "members": [{"path": str(path), "sha256": file_sha256(Path(path)), "name": model.metadata.get("name"),
                     "val_recall_at_10": model.metadata.get("val_recall_at_10")}
                    for path, model in zip(members, loaded)],
        "weights": ensemble.weights,
    }
    if half_precision is None:
        half_precision = all(_holds_float16_values(model.model) for model in loaded)
    path = save_model(output, ensemble.eval(), config, loaded[0].featurizer, metadata, half_precision=half_precision)
    logger.info("ensemble of %d %s models written to %s", len(members), member_class, path)
    return path


def _holds_float16_values(model) -> bool:
    """Whether every floating-point weight of ``model`` is a float16 value (so storing it as float16 is exact)."""
    return all(torch.equal(tensor, tensor.half().to(tensor.dtype))
               for tensor in model.state_dict().values() if tensor.is_floating_point())
