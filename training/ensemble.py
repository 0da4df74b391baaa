"""``matchms-neims ensemble``: combine trained teacher model files into one :class:`TeacherEnsemble` model file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.models.ensemble import TeacherEnsemble
from training.data import file_sha256
from training.runner import training_command

logger = logging.getLogger(__name__)

#: Member metadata that must agree: members trained on different data or splits would leak test molecules.
SHARED_METADATA = ("training_data", "split")


def build_teacher_ensemble(members: Sequence[str], output: str, weights: Sequence[float] | None = None,
                           name: str = "neims-teacher-ensemble", version: str = "0.1.0") -> Path:
    """Write a :class:`TeacherEnsemble` of trained :class:`TeacherGNN` model files.

    Parameters
    ----------
    members
        Teacher model files (``TeacherGNN``) with the same featurizer, data and split.
    output
        Model file to write (atomically).
    weights
        Weight of each member (default: equal).
    name, version
        Recorded in the model file's metadata.

    Returns
    -------
    Path
        The written model file.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two member files, got {len(members)}")
    loaded = [load_model(path) for path in members]
    for path, model in zip(members, loaded):
        if model.model_class != "TeacherGNN":
            raise ValueError(f"{path} is a {model.model_class}; ensemble members must be TeacherGNN models")
        if model.featurizer.to_config() != loaded[0].featurizer.to_config():
            raise ValueError(f"{path} reads featurizer {model.featurizer.to_config()}, {members[0]} reads "
                             f"{loaded[0].featurizer.to_config()}; ensemble members must share one featurizer")
        for key in SHARED_METADATA:
            if model.metadata.get(key) != loaded[0].metadata.get(key):
                raise ValueError(f"{path} was trained with {key} {model.metadata.get(key)!r}, {members[0]} with "
                                 f"{loaded[0].metadata.get(key)!r}; ensemble members must share data and split")
    config = {"members": [model.model_config for model in loaded]}
    if weights is not None:
        config["weights"] = [float(weight) for weight in weights]
    ensemble = TeacherEnsemble(**config)
    for member, model in zip(ensemble.members, loaded):
        member.load_state_dict(model.model.state_dict())
    metadata = {
        "name": name,
        "version": version,
        "model_class": "TeacherEnsemble",
        "training_command": training_command(),
        **{key: loaded[0].metadata.get(key) for key in SHARED_METADATA},
        "members": [{"path": str(path), "sha256": file_sha256(Path(path)), "name": model.metadata.get("name"),
                     "val_recall_at_10": model.metadata.get("val_recall_at_10")}
                    for path, model in zip(members, loaded)],
        "weights": ensemble.weights,
    }
    path = save_model(output, ensemble.eval(), config, loaded[0].featurizer, metadata)
    logger.info("ensemble of %d teachers written to %s", len(members), path)
    return path
