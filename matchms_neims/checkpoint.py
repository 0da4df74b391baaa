"""Saving and loading trained models in a versioned, pickle-free format.

A model file is a ``torch.save`` of a plain dict::

    {"format": "matchms-neims-model", "version": 2, "model_class": "NeimsMLP",
     "model_config": {...}, "featurizer": {...}, "metadata": {...}, "state_dict": {...}, "sha256": "..."}

It is loaded with ``torch.load(weights_only=True)``, so opening a model file never runs code. ``sha256``
(format version 2) is a digest of everything else in the file; a file whose content no longer matches it
(changed weights or settings) is refused. Version 1 files (no digest) still load.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from matchms_neims.featurize import Featurizer
from matchms_neims.models import get_model_class
from matchms_neims.utils import atomic_path

FORMAT_NAME = "matchms-neims-model"
FORMAT_VERSION = 2
#: Payload entries covered by the ``sha256`` digest.
_DIGESTED_KEYS = ("format", "version", "model_class", "model_config", "featurizer", "metadata")


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


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model file written by :func:`save_model` (in eval mode, float32)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for foreign files
        raise CheckpointError(f"{path} is not a matchms-neims model file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a matchms-neims model file (format {payload.get('format')!r})"
                              if isinstance(payload, dict) else f"{path} is not a matchms-neims model file")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['version']}; this matchms-neims reads up to "
                              f"{FORMAT_VERSION}. Upgrade matchms-neims.")
    missing = [key for key in ("model_class", "model_config", "featurizer", "state_dict") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: the model file lacks {', '.join(missing)}")
    if payload.get("version", 0) >= 2 and payload.get("sha256") != payload_digest(payload):
        raise CheckpointError(f"{path}: the content does not match the file's sha256 digest: the file was changed "
                              "after it was written (tampered or corrupted); refusing to load it")
    try:
        model_class = get_model_class(payload["model_class"])
    except KeyError as error:
        raise CheckpointError(f"{path}: unknown model class {payload['model_class']!r}") from error
    model = model_class(**payload["model_config"])
    state_dict = {key: tensor.float() if tensor.is_floating_point() else tensor
                  for key, tensor in payload["state_dict"].items()}
    model.load_state_dict(state_dict)
    model.to(device).eval()
    return LoadedModel(model=model, featurizer=Featurizer(**payload["featurizer"]),
                       model_class=payload["model_class"], model_config=payload["model_config"],
                       metadata=payload.get("metadata", {}))
