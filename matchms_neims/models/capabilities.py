"""What a spectrum model supports, declared by the model class and read by the predictor and the exporter.

Every network a model file may hold derives from :class:`SpectrumModel`. Its class attributes say what the
model can do, so callers ask the model instead of probing it for methods:

- ``supports_uncertainty``: ``predict_with_uncertainty(*inputs, nominal_mass, n_samples, seed)`` gives the
  MC-dropout mean and std (:meth:`SpectrumModel.predict_with_uncertainty` serves every model with dropout);
- ``has_expert_weights``: ``forward_with_details(*inputs, nominal_mass)`` gives ``expert_weights`` of
  ``n_experts`` experts (a mixture of experts);
- ``reads_graphs``: the inputs are molecular graphs (PyTorch Geometric batches), not one fingerprint tensor;
- ``reads_formula``: the fingerprint ends with the formula count vector (a formula head reads it);
- ``distillation_embedding_size``: the width of the molecule embedding ``distillation_embedding(*inputs,
  nominal_mass)`` gives, which a distilled student's feature loss imitates (0: the model has none).

:attr:`SpectrumModel.formula_head` and :attr:`SpectrumModel.export_obstacle` follow from them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from matchms_neims.models.formula_head import FormulaHead


class SpectrumModel(nn.Module):
    """Base class of the spectrum models: the capabilities they declare (see the module docstring)."""

    supports_uncertainty: ClassVar[bool] = False
    has_expert_weights: ClassVar[bool] = False
    reads_graphs: ClassVar[bool] = False
    reads_formula: bool = False
    distillation_embedding_size: int = 0

    @property
    def formula_head(self) -> FormulaHead | None:
        """The model's formula head (``None``: it has none); it says which molecules it renders by its fallback."""
        head = self._modules.get("head")
        return head if isinstance(head, FormulaHead) else None

    @property
    def export_obstacle(self) -> str | None:
        """Why the model cannot be exported to ONNX or TorchScript (``None``: it can)."""
        if self.reads_graphs:
            return ("reads molecular graphs (PyTorch Geometric batches); only fingerprint models (NeimsMLP, "
                    "StudentMoE) can be exported")
        if self.formula_head is not None:
            return ("has a formula head, which enumerates subformulae in Python for every molecule; it cannot be "
                    "traced to a fixed graph. Use the torch backend")
        return None

    @torch.no_grad()
    def predict_with_uncertainty(self, *inputs: torch.Tensor, n_samples: int = 30, seed: int | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Monte-Carlo dropout: mean and standard deviation of ``n_samples`` stochastic predictions.

        Only the dropout layers are switched to sampling; BatchNorm uses (and keeps) its running statistics and
        training-only behaviour (DropEdge, fallback routing) stays off, so the call changes no state of the model.
        With ``seed`` the samples repeat, and torch's global generator is left as it was.

        Returns
        -------
        mean, std
            Both of shape ``(batch, max_mz + 1)``, in sqrt-intensity space (rectified).
        """
        if not self.supports_uncertainty:
            raise ValueError(f"{type(self).__name__} declares no MC-dropout uncertainty")
        was_training = self.training
        self.eval()
        dropouts = [module for module in self.modules() if isinstance(module, nn.Dropout)]
        generator_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            for module in dropouts:
                module.train()
            samples = torch.stack([self(*inputs) for _ in range(n_samples)])
        finally:
            for module in dropouts:
                module.eval()
            self.train(was_training)
            if seed is not None:
                torch.random.set_rng_state(generator_state)
        return samples.mean(dim=0), samples.std(dim=0)

    def distillation_embedding(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The molecule embedding a student's feature loss imitates, ``(batch, distillation_embedding_size)`` (the
        teachers give their ``ecfp_embedding``); only models that declare a size have one."""
        raise ValueError(f"{type(self).__name__} declares no distillation embedding")

    def deterministic_outputs(self, *inputs) -> tuple[torch.Tensor, ...]:
        """A forward pass: ``(spectrum, expert_weights)`` for a mixture of experts, else ``(spectrum,)``."""
        if self.has_expert_weights:
            output = self.forward_with_details(*inputs)
            return output.spectrum, output.expert_weights
        return (self(*inputs),)


__all__ = ["SpectrumModel"]
