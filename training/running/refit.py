"""Refit a chosen recipe on every cleaned spectrum (``matchms-neims train ... --refit``).

Settings and the epoch count are chosen on validation by the ordinary run of a config (the *selection
run*). The refit then trains the same config on all cleaned spectra (train + validation + test:
``data.split_method: all``) for that many epochs, with no validation, and exports the last (EMA) weights.
The learning-rate schedule spans the refit's epochs, so it anneals as in the selection run. The refit's
model file records the selection run (model file, best epoch and its validation score) in its metadata,
so the held-out figures of the recipe stay with the weights that saw all data.
"""

from __future__ import annotations

import re
from pathlib import Path

from matchms_neims.checkpoint import load_model
from matchms_neims_training.config import TrainConfig

_EPOCH = re.compile(r"epoch=(\d+)")


def selection_epochs(model_path: str | Path) -> tuple[int, dict]:
    """Epochs to refit for, from the selection run's exported model (best epoch + 1), and that model's metadata.

    Raises
    ------
    FileNotFoundError
        When the selection model does not exist (run the config without ``--refit`` first, or give
        ``--refit-epochs``).
    ValueError
        When its metadata does not name the best epoch.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"selection model {path} not found: train the config without --refit first "
                                "(its best epoch sets the refit's length), or give --refit-epochs")
    metadata = load_model(path).metadata
    match = _EPOCH.search(str(metadata.get("best_epoch_checkpoint", "")))
    if match is None:
        raise ValueError(f"{path}: its metadata names no best epoch (best_epoch_checkpoint); give --refit-epochs")
    return int(match.group(1)) + 1, metadata


def refit_config(config: TrainConfig, epochs: int | None = None) -> tuple[TrainConfig, dict]:
    """The all-data config of a selection config, and the refit's provenance for the model metadata.

    The refit trains ``epochs`` epochs (default: the selection run's best epoch + 1, read from the model
    at ``config.export.path``), on a cache of its own (``<cache stem>.all.h5``), into
    ``<output_dir>_refit`` and ``<that dir>/<export file name>``.
    """
    provenance: dict = {"trained_on": "all cleaned spectra (train + validation + test)"}
    selection = None
    if epochs is None:
        epochs, selection = selection_epochs(config.export.path)
    else:
        provenance["epochs_from"] = "--refit-epochs"
        if Path(config.export.path).is_file():
            selection = load_model(config.export.path).metadata
    if selection is not None:
        provenance.update(selection_model=str(config.export.path),
                          selection_best_epoch=selection.get("best_epoch_checkpoint"),
                          selection_split=selection.get("split"),
                          selection_scores={key: value for key, value in selection.items()
                                            if key.startswith("val_") and isinstance(value, (int, float))})
    if epochs < 1:
        raise ValueError(f"a refit needs at least one epoch, got {epochs}")
    provenance["epochs"] = epochs
    refit = TrainConfig.from_dict(config.to_dict())
    refit.data.split_method = "all"
    cache = Path(config.data.cache)
    refit.data.cache = str(cache.with_name(f"{cache.stem}.all{cache.suffix or '.h5'}"))
    refit.optim.max_epochs = epochs
    refit.trainer.output_dir = f"{config.trainer.output_dir.rstrip('/')}_refit"
    refit.export.path = str(Path(refit.trainer.output_dir) / Path(config.export.path).name)
    refit.refit = provenance
    return refit, provenance
