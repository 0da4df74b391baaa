"""Inference backends of the predictor: what runs a loaded model on a chunk of collated inputs.

Each backend has one method, ``run(inputs, masses)``: the model's deterministic outputs for a chunk (the sqrt
spectrum, and for a mixture of experts its expert weights), as torch tensors. :class:`TorchBackend` runs the
``nn.Module`` itself; :class:`OnnxBackend` runs the fingerprint models (baseline, student) with onnxruntime,
exported in memory and checked against PyTorch (:func:`~matchms_neims.export.onnx_session`), optionally with the
weights quantised to int8. MC-dropout sampling always runs in PyTorch (it needs the dropout layers).
"""

from __future__ import annotations

import numpy as np
import torch

from matchms_neims.checkpoint import LoadedModel

#: Backend names, as ``NeimsPredictor(backend=...)`` and ``predict --backend`` take them.
BACKENDS = ("torch", "onnx", "onnx-int8")


class TorchBackend:
    """The loaded ``nn.Module`` in PyTorch, on whatever device it is on."""

    name = "torch"

    def __init__(self, loaded: LoadedModel):
        self.model = loaded.model

    def run(self, inputs: tuple[torch.Tensor, ...], masses: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.deterministic_outputs(*inputs, masses)


class OnnxBackend:
    """The model exported to ONNX in memory and run by onnxruntime on the CPU (``quantize``: int8 weights).

    Parameters
    ----------
    loaded
        A fingerprint model (its ``export_blocker`` is empty).
    threads
        onnxruntime's intra-op threads (0: its default).
    quantize
        Quantise the weights to int8 (dynamic quantisation; checked to keep an m/z-weighted cosine of at least
        0.98 to PyTorch's spectra on reference molecules).
    """

    def __init__(self, loaded: LoadedModel, threads: int = 0, quantize: bool = False):
        from matchms_neims.export import onnx_session  # onnxruntime is optional; imported when asked for

        self.name = "onnx-int8" if quantize else "onnx"
        self.session = onnx_session(loaded, threads, quantize=quantize)

    def run(self, inputs: tuple[torch.Tensor, ...], masses: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (fingerprint,) = inputs
        outputs = self.session.run(None, {"fingerprint": fingerprint.float().cpu().numpy(),
                                          "nominal_mass": masses.cpu().numpy().astype(np.int64)})
        return tuple(torch.from_numpy(output) for output in outputs)


def make_backend(name: str, loaded: LoadedModel, threads: int = 0) -> TorchBackend | OnnxBackend:
    """The backend called ``name`` (one of :data:`BACKENDS`) for ``loaded``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    if name == "torch":
        return TorchBackend(loaded)
    return OnnxBackend(loaded, threads, quantize=name == "onnx-int8")


__all__ = ["BACKENDS", "OnnxBackend", "TorchBackend", "make_backend"]
