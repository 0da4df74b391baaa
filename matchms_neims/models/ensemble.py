"""Ensembles: several trained spectrum models of one class, averaged into one model.

The members read the same inputs (one featurizer), so the ensemble is one model file and one forward
pass per member. Two averages:

- ``"sqrt"``: the weighted mean of the members' sqrt-intensity spectra (the teacher ensemble's);
- ``"intensity"``: the weighted mean of the members' intensity spectra, each scaled to base peak 1 first,
  returned in sqrt space. For formula-head members this keeps the isotope envelopes exact: each member's
  spectrum is a weighted sum of exact envelopes, and so is their mean (a mean of sqrt spectra is not).

MC-dropout uncertainty (members that support it) counts the members' disagreement as uncertainty. With the
``"sqrt"`` average it is that of the mixture: ``var = sum_m w_m * (std_m ** 2 + mean_m ** 2) - mean ** 2``; with
the ``"intensity"`` average, the spread of the ensemble's own spectrum over dropout samples of every member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from matchms_neims.models import get_model_class
from matchms_neims.models.capabilities import SpectrumModel
from matchms_neims.models.formula_head import FormulaHead

if TYPE_CHECKING:
    from matchms_neims.models.teacher import TeacherOutput

#: How an ensemble combines its members' spectra (module docstring).
AVERAGES = ("sqrt", "intensity")


class SpectrumEnsemble(SpectrumModel):
    """Weighted average of spectrum models of one class.

    Parameters
    ----------
    members
        Keyword arguments of each member (their ``model_config``); all must predict the same ``max_mz``.
    weights
        Weight of each member (normalised to sum to 1); equal weights by default.
    member_class
        Model class of the members (a name of :data:`~matchms_neims.models.MODEL_CLASSES`); mixtures of experts
        cannot be members (their expert weights do not average).
    average
        ``"sqrt"`` or ``"intensity"`` (module docstring).
    """

    def __init__(self, members: Sequence[dict], weights: Sequence[float] | None = None,
                 member_class: str = "TeacherGNN", average: str = "sqrt"):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if average not in AVERAGES:
            raise ValueError(f"unknown average {average!r}; expected one of {AVERAGES}")
        weights = [1.0] * len(members) if weights is None else [float(weight) for weight in weights]
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"need one non-negative weight per member with a positive sum, got {weights}")
        model_class = get_model_class(member_class)
        if model_class.has_expert_weights:
            raise ValueError(f"{member_class} is a mixture of experts; its expert weights cannot be averaged")
        self.members = nn.ModuleList(model_class(**config) for config in members)
        max_mz = {member.max_mz for member in self.members}
        if len(max_mz) > 1:
            raise ValueError(f"the members predict different m/z ranges: max_mz {sorted(max_mz)}")
        self.max_mz = max_mz.pop()
        self.weights = [weight / sum(weights) for weight in weights]
        self.average = average
        self.reads_graphs = model_class.reads_graphs
        self.reads_formula = self.members[0].reads_formula
        self.supports_uncertainty = model_class.supports_uncertainty

    @property
    def formula_head(self) -> FormulaHead | None:
        """The first member's formula head: the members share one featurizer and so one formula head setting."""
        return self.members[0].formula_head

    def combine(self, spectra: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ensemble's sqrt-intensity spectrum from the members' sqrt-intensity spectra (one per member)."""
        if self.average == "sqrt":
            return sum(weight * spectrum for weight, spectrum in zip(self.weights, spectra))
        intensity = sum(weight * spectrum.square() / spectrum.square().amax(dim=-1, keepdim=True).clamp_min(1e-12)
                        for weight, spectrum in zip(self.weights, spectra))
        return intensity.sqrt()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Predicted spectra in sqrt-intensity space, shape ``(batch, max_mz + 1)``; the members' inputs."""
        return self.combine([member(*inputs) for member in self.members])

    @torch.no_grad()
    def predict_with_uncertainty(self, *inputs: torch.Tensor, n_samples: int = 30, seed: int | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """MC-dropout mean and std: ``n_samples`` samples from each member (module docstring).

        With the ``"sqrt"`` average, member ``m`` is sampled with seed ``seed + m``
        (:meth:`~matchms_neims.models.capabilities.SpectrumModel.predict_with_uncertainty`); with ``"intensity"``,
        every sample runs all members.

        Returns
        -------
        mean, std
            Both of shape ``(batch, max_mz + 1)``, in sqrt-intensity space.
        """
        if self.average == "intensity":
            return super().predict_with_uncertainty(*inputs, n_samples=n_samples, seed=seed)
        if not self.supports_uncertainty:
            raise ValueError("this ensemble has no MC-dropout uncertainty: its members have none")
        mean = torch.zeros(())
        second_moment = torch.zeros(())
        for index, (weight, member) in enumerate(zip(self.weights, self.members)):
            member_mean, member_std = member.predict_with_uncertainty(
                *inputs, n_samples=n_samples, seed=None if seed is None else seed + index)
            mean = mean + weight * member_mean
            second_moment = second_moment + weight * (member_std**2 + member_mean**2)
        return mean, (second_moment - mean**2).clamp_min(0).sqrt()


class TeacherEnsemble(SpectrumEnsemble):
    """An ensemble of :class:`~matchms_neims.models.teacher.TeacherGNN` teachers (sqrt average), which also gives
    the details distillation reads (:meth:`forward_with_details`)."""

    def __init__(self, members: Sequence[dict], weights: Sequence[float] | None = None):
        super().__init__(members, weights, member_class="TeacherGNN", average="sqrt")
        self.distillation_embedding_size = self.members[0].distillation_embedding_size

    def forward_with_details(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> TeacherOutput:
        """Weighted mean spectrum and bond-breaking probability; embeddings of the first member.

        The ``ecfp_embedding`` (for feature distillation) and ``graph_embedding`` are the first member's.
        """
        from matchms_neims.models.teacher import TeacherOutput  # (the members' module: already imported)

        outputs = [member.forward_with_details(graph, ecfp, nominal_mass) for member in self.members]
        spectrum = self.combine([output.spectrum for output in outputs])
        bond_probability = sum(weight * output.bond_break_probability for weight, output in zip(self.weights, outputs))
        return TeacherOutput(spectrum, bond_probability, outputs[0].ecfp_embedding, outputs[0].graph_embedding)

    def distillation_embedding(self, graph, ecfp: torch.Tensor, nominal_mass: torch.Tensor) -> torch.Tensor:
        """The first member's ``ecfp_embedding``."""
        return self.members[0].distillation_embedding(graph, ecfp, nominal_mass)


__all__ = ["AVERAGES", "SpectrumEnsemble", "TeacherEnsemble"]
