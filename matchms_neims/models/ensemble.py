"""An ensemble teacher: several :class:`~matchms_neims.models.teacher.TeacherGNN` models averaged.

The members read the same inputs (one featurizer), so the ensemble is one model file and one forward
pass per member. Its spectrum is the weighted mean of the members' sqrt-intensity spectra; its MC-dropout
uncertainty is that of the mixture, so the members' disagreement counts as uncertainty:
``var = sum_m w_m * (std_m ** 2 + mean_m ** 2) - mean ** 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from matchms_neims.models.teacher import TeacherGNN, TeacherOutput


class TeacherEnsemble(nn.Module):
    """Weighted average of teacher networks.

    Parameters
    ----------
    members
        Keyword arguments of each member :class:`TeacherGNN` (their ``model_config``); all must predict
        the same ``max_mz``.
    weights
        Weight of each member (normalised to sum to 1); equal weights by default.
    """

    def __init__(self, members: Sequence[dict], weights: Sequence[float] | None = None):
        super().__init__()
        if not members:
            raise ValueError("a TeacherEnsemble needs at least one member")
        weights = [1.0] * len(members) if weights is None else [float(weight) for weight in weights]
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"need one non-negative weight per member with a positive sum, got {weights}")
        self.members = nn.ModuleList(TeacherGNN(**config) for config in members)
        max_mz = {member.max_mz for member in self.members}
        if len(max_mz) > 1:
            raise ValueError(f"the members predict different m/z ranges: max_mz {sorted(max_mz)}")
        self.max_mz = max_mz.pop()
        self.weights = [weight / sum(weights) for weight in weights]

    def forward_with_details(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> TeacherOutput:
        """Weighted mean spectrum and bond-breaking probability; embeddings of the first member.

        The ``ecfp_embedding`` (for feature distillation) and ``graph_embedding`` are the first member's.
        """
        outputs = [member.forward_with_details(graph, ecfp, nominal_mass) for member in self.members]
        spectrum = sum(weight * output.spectrum for weight, output in zip(self.weights, outputs))
        bond_probability = sum(weight * output.bond_break_probability for weight, output in zip(self.weights, outputs))
        return TeacherOutput(spectrum, bond_probability, outputs[0].ecfp_embedding, outputs[0].graph_embedding)

    def forward(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """Predicted spectra in sqrt-intensity space, shape ``(batch, max_mz + 1)``."""
        return self.forward_with_details(graph, ecfp, nominal_mass).spectrum

    @torch.no_grad()
    def predict_with_uncertainty(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor, n_samples: int = 30,
                                 seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """MC-dropout mean and std of the mixture: ``n_samples`` samples from each member.

        Member ``m`` is sampled with seed ``seed + m`` (see :meth:`TeacherGNN.predict_with_uncertainty`).

        Returns
        -------
        mean, std
            Both of shape ``(batch, max_mz + 1)``, in sqrt-intensity space.
        """
        mean = torch.zeros(())
        second_moment = torch.zeros(())
        for index, (weight, member) in enumerate(zip(self.weights, self.members)):
            member_mean, member_std = member.predict_with_uncertainty(
                graph, ecfp, nominal_mass, n_samples=n_samples, seed=None if seed is None else seed + index)
            mean = mean + weight * member_mean
            second_moment = second_moment + weight * (member_std**2 + member_mean**2)
        return mean, (second_moment - mean**2).clamp_min(0).sqrt()


__all__ = ["TeacherEnsemble"]
