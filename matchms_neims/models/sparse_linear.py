"""A linear layer that is fast on fingerprints: sparse inputs at inference on a CPU.

A 6144-value student fingerprint has about 50 non-zero values. A dense ``nn.Linear`` multiplies all
6144 of them; :class:`SparseInputLinear` sums only the weight columns of the non-zero inputs, scaled by
their values (:func:`torch.nn.functional.embedding_bag`), which is the same result up to the order of
floating-point additions (differences of order 1e-7) and about 4x faster for a 6144 -> 2000 layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _tracing_or_compiling() -> bool:
    """Whether the forward is being traced, scripted, exported or compiled (those take the dense path)."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling())


class SparseInputLinear(nn.Linear):
    """``nn.Linear`` with the same parameters and state dict, computed sparsely where that pays.

    The sparse path runs without gradients (inference), on CPU tensors of shape ``(batch, in_features)``
    with at most ``max_density`` of their values non-zero, and not while tracing or exporting. It keeps a
    transposed copy of the weight (``in_features x out_features``, rebuilt whenever the weight changes),
    so that each non-zero input reads one contiguous row.

    Parameters
    ----------
    in_features, out_features, bias
        As for :class:`torch.nn.Linear`.
    max_density
        Largest fraction of non-zero inputs for which the sparse path is taken.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, max_density: float = 0.05,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.max_density = max_density
        self._weight_t: torch.Tensor | None = None
        self._weight_t_key: tuple | None = None

    def _transposed_weight(self) -> torch.Tensor:
        try:
            version = self.weight._version
        except RuntimeError:  # an inference tensor (the model was built under inference_mode): no version counter
            version = None
        key = (self.weight.data_ptr(), version, self.weight.dtype)
        if self._weight_t is None or self._weight_t_key != key:
            self._weight_t = self.weight.detach().t().contiguous()
            self._weight_t_key = key
        return self._weight_t

    def _sparse_path_applies(self, x: torch.Tensor) -> bool:
        return (x.dim() == 2 and x.shape[0] > 0 and x.device.type == "cpu" and x.dtype == self.weight.dtype
                and not (torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad))
                and not _tracing_or_compiling())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._sparse_path_applies(x):
            return super().forward(x)
        rows, columns = x.nonzero(as_tuple=True)
        if rows.numel() > self.max_density * x.numel():
            return super().forward(x)
        offsets = torch.searchsorted(rows, torch.arange(x.shape[0], device=x.device))
        output = F.embedding_bag(columns, self._transposed_weight(), offsets, mode="sum",
                                 per_sample_weights=x[rows, columns])
        return output + self.bias if self.bias is not None else output


__all__ = ["SparseInputLinear"]
