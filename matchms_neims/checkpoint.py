"""Saving and loading trained models in a versioned, pickle-free format.

A model file is a ``torch.save`` of a plain dict::

    {"format": "matchms-neims-model", "version": 2, "model_class": "NeimsMLP",
     "model_config": {...}, "featurizer": {...}, "metadata": {...}, "state_dict": {...}, "sha256": "..."}

It is loaded with ``torch.load(weights_only=True)``, so opening a model file never runs code. ``sha256``
(format version 2) is a digest of everything else in the file; a file whose content no longer matches it
(changed weights or settings) is refused. Version 1 files (no digest) load only when the file's SHA-256 is
one of :data:`KNOWN_UNDIGESTED_FILES`, or with ``allow_unverified=True`` (environment:
``MATCHMS_NEIMS_ALLOW_UNVERIFIED_MODELS=1``).

The settings in a file are checked before anything is allocated: the keywords must be the model class's, the
model is first built on PyTorch's ``meta`` device (shapes without memory) and every tensor shape must equal the
file's, and the featurizer must fit the model (fingerprint width, formula input, m/z range). A file that
claims ``width=200000`` next to small weights is refused with a reason instead of allocating gigabytes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from matchms_neims.featurize import Featurizer
from matchms_neims.models import get_model_class
from matchms_neims.models.formula_head import FormulaHead
from matchms_neims.models.sparse_linear import SparseInputLinear
from matchms_neims.subformulae import FORMULA_SIZE
from matchms_neims.utils import atomic_path, file_sha256

#: The default model shipped inside the package (``matchms_neims/weights``).
BUNDLED_MODEL_FILE = "neims_formula.pt"


def bundled_model_path() -> Path:
    """Path of the default model shipped inside the package."""
    return Path(str(resources.files("matchms_neims") / "weights" / BUNDLED_MODEL_FILE))


FORMAT_NAME = "matchms-neims-model"
FORMAT_VERSION = 2
#: Payload entries covered by the ``sha256`` digest.
_DIGESTED_KEYS = ("format", "version", "model_class", "model_config", "featurizer", "metadata")
#: SHA-256 of released model files of format version 1 (no digest inside), which load without an opt-in. No
#: version 1 file was ever released, so the set is empty; a version 1 file needs ``allow_unverified``.
KNOWN_UNDIGESTED_FILES: frozenset[str] = frozenset()
#: Environment variable that, set to 1, lets version 1 files of unknown content load (``allow_unverified``).
ALLOW_UNVERIFIED_ENV = "MATCHMS_NEIMS_ALLOW_UNVERIFIED_MODELS"


class CheckpointError(ValueError):
    """A model file is missing, of another format, or of an unsupported version."""


@dataclass
class LoadedModel:
    """A model ready for inference with everything needed to feed it."""

    model: nn.Module
    featurizer: Featurizer
    model_class: str
    model_config: dict
    metadata: dict = field(default_factory=dict)


def _update_with_tensors(digest, state_dict: dict) -> None:
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")


def state_dict_digest(state_dict: dict) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256()
    _update_with_tensors(digest, state_dict)
    return digest.hexdigest()


def payload_digest(payload: dict) -> str:
    """SHA-256 of a model file's settings (canonical JSON) and of its tensors (see :func:`state_dict_digest`)."""
    digest = hashlib.sha256()
    settings = {key: payload.get(key) for key in _DIGESTED_KEYS}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    _update_with_tensors(digest, payload["state_dict"])
    return digest.hexdigest()


def save_model(path: str | os.PathLike, model: nn.Module, model_config: dict, featurizer: Featurizer,
               metadata: dict | None = None, half_precision: bool = False) -> Path:
    """Write a model file atomically.

    Parameters
    ----------
    path
        Destination (``.pt``).
    model
        The trained module; its class must be in :data:`matchms_neims.models.MODEL_CLASSES`.
    model_config
        Keyword arguments that rebuild the module.
    featurizer
        The featurizer the model was trained with.
    metadata
        Free-form provenance: name, version, training command, metrics, data licence.
    half_precision
        Store floating point weights as float16 (half the size; loaded back as float32).
    """
    model_class = type(model).__name__
    try:
        get_model_class(model_class)
    except KeyError as error:
        raise CheckpointError(f"model class {model_class} is not registered in matchms_neims.models") from error
    state_dict = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        state_dict[key] = tensor.half() if half_precision and tensor.is_floating_point() else tensor
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model_class": model_class,
        "model_config": dict(model_config),
        "featurizer": featurizer.to_config(),
        "metadata": dict(metadata or {}),
        "state_dict": state_dict,
    }
    payload["sha256"] = payload_digest(payload)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _keyword_problem(model_class: type, config: dict) -> str | None:
    """Why ``config`` cannot be the keywords of ``model_class`` (unknown or missing ones), or ``None``."""
    parameters = inspect.signature(model_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    known = {name for name in parameters if name != "self"}
    unknown = sorted(set(config) - known)
    required = [name for name, p in parameters.items() if name != "self" and p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    missing = [name for name in required if name not in config]
    if unknown:
        return f"unknown settings {unknown} for {model_class.__name__}"
    if missing:
        return f"missing settings {missing} for {model_class.__name__}"
    return None


def _featurizer_problem(skeleton: nn.Module, featurizer: Featurizer) -> str | None:
    """Why ``featurizer`` cannot feed ``skeleton`` (a model built on the meta device), or ``None``."""
    reads_formula = any(isinstance(module, FormulaHead) for module in skeleton.modules())
    if reads_formula != featurizer.formula:
        return (f"the featurizer {'gives' if featurizer.formula else 'does not give'} the formula count vector, "
                f"but the model {'reads' if reads_formula else 'does not read'} one")
    if featurizer.kind in ("neims_count_ecfp", "student_fingerprint"):
        width = featurizer.size - (FORMULA_SIZE if featurizer.formula else 0)
    else:  # graphs: the fingerprint branch reads the ECFP part
        width = featurizer.n_bits
    widths = {module.in_features for module in skeleton.modules() if isinstance(module, SparseInputLinear)}
    if widths and widths != {width}:
        return (f"the featurizer ({featurizer.kind}, n_bits={featurizer.n_bits}, "
                f"n_count_bits={featurizer.n_count_bits}) gives fingerprints of {width} values, but the model reads "
                f"{sorted(widths)}")
    model_max_mz = getattr(skeleton, "max_mz", None)
    if model_max_mz is not None and model_max_mz != featurizer.max_mz:
        return f"the featurizer's max_mz {featurizer.max_mz} is not the model's {model_max_mz}"
    return None


def _checked_skeleton(path: Path, model_class: type, config: dict, featurizer: Featurizer, state_dict: dict
                      ) -> None:
    """Build the model on the meta device (no memory) and compare it with the file's tensors and featurizer."""
    problem = _keyword_problem(model_class, config)
    if problem:
        raise CheckpointError(f"{path}: {problem}; refusing to build it")
    try:
        with torch.device("meta"):
            skeleton = model_class(**config)
    except Exception as error:  # noqa: BLE001 - any failure of the settings is the file's problem
        raise CheckpointError(f"{path}: the model settings are invalid: {error}") from None
    expected = {key: tuple(tensor.shape) for key, tensor in skeleton.state_dict().items()}
    stored = {key: tuple(tensor.shape) for key, tensor in state_dict.items()}
    if expected.keys() != stored.keys():
        missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
        raise CheckpointError(f"{path}: the weights do not fit the settings (missing {missing[:5]}, "
                              f"unexpected {extra[:5]})")
    wrong = [key for key in expected if expected[key] != stored[key]]
    if wrong:
        key = wrong[0]
        raise CheckpointError(f"{path}: the settings ask for {key} of shape {expected[key]}, the file holds "
                              f"{stored[key]} ({len(wrong)} tensor(s) differ); refusing to build it")
    problem = _featurizer_problem(skeleton, featurizer)
    if problem:
        raise CheckpointError(f"{path}: {problem}")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", allow_unverified: bool = False
               ) -> LoadedModel:
    """Load a model file written by :func:`save_model` (in eval mode, float32).

    Parameters
    ----------
    path
        The model file.
    device
        Where the model goes.
    allow_unverified
        Load a format version 1 file (no digest) whose SHA-256 is not in :data:`KNOWN_UNDIGESTED_FILES`
        (also: environment variable ``MATCHMS_NEIMS_ALLOW_UNVERIFIED_MODELS=1``).

    Raises
    ------
    CheckpointError
        For a file that is missing, of another format or version, changed after it was written, unverifiable,
        or whose settings do not fit its weights or its featurizer (module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for foreign files
        raise CheckpointError(f"{path} is not a matchms-neims model file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a matchms-neims model file (format {payload.get('format')!r})"
                              if isinstance(payload, dict) else f"{path} is not a matchms-neims model file")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version!r}; this matchms-neims reads up to "
                              f"{FORMAT_VERSION}. Upgrade matchms-neims.")
    missing = [key for key in ("model_class", "model_config", "featurizer", "state_dict") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: the model file lacks {', '.join(missing)}")
    if not all(isinstance(payload[key], dict) for key in ("model_config", "featurizer", "state_dict")) or \
            not all(isinstance(tensor, torch.Tensor) for tensor in payload["state_dict"].values()):
        raise CheckpointError(f"{path}: model_config, featurizer and state_dict must be a dict each (of tensors)")
    if version >= 2:
        if payload.get("sha256") != payload_digest(payload):
            raise CheckpointError(f"{path}: the content does not match the file's sha256 digest: the file was "
                                  "changed after it was written (tampered or corrupted); refusing to load it")
    elif not (allow_unverified or os.environ.get(ALLOW_UNVERIFIED_ENV) == "1"
              or file_sha256(path) in KNOWN_UNDIGESTED_FILES):
        raise CheckpointError(f"{path} is a format version {version} file without a digest, and not a known "
                              "released file: its content cannot be verified. Re-save it with this matchms-neims, "
                              f"or pass allow_unverified=True (environment: {ALLOW_UNVERIFIED_ENV}=1) if you trust it")
    try:
        model_class = get_model_class(payload["model_class"])
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: unknown model class {payload['model_class']!r}") from error
    try:
        featurizer = Featurizer(**payload["featurizer"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the featurizer settings are invalid: {error}") from None
    _checked_skeleton(path, model_class, payload["model_config"], featurizer, payload["state_dict"])
    model = model_class(**payload["model_config"])
    state_dict = {key: tensor.float() if tensor.is_floating_point() else tensor
                  for key, tensor in payload["state_dict"].items()}
    model.load_state_dict(state_dict)
    model.to(device).eval()
    return LoadedModel(model=model, featurizer=featurizer, model_class=payload["model_class"],
                       model_config=payload["model_config"], metadata=payload.get("metadata", {}))
