"""The formula head: a distribution over the subformulae of the molecular formula, rendered with exact isotopes.

RASSP (Zhu & Jonas 2023) showed that predicting which *subformulae* of the molecule appear, and rendering
each with its exact isotope envelope, beats predicting one intensity per m/z. Here, for each molecule,

1. the subformulae of its formula are enumerated (:func:`matchms_neims.subformulae.enumerate_subformulae`);
2. each gets a score from the molecule embedding and its own features (element counts kept and lost,
   mass, neutral loss, ring-plus-double-bond equivalents, odd/even electron)::

       score_i = <g(embedding), phi(features_i)> / sqrt(d) + forward[m_i] + reverse[M - m_i]

   where ``phi`` is a small MLP shared by all subformulae, and ``forward``/``reverse`` are per-m/z and
   per-neutral-loss logits of the molecule (the bidirectional head's two views, as log-space priors);
3. each subformula's weight ``w_i`` multiplies its isotope envelope, and their sum is the unit-resolution
   spectrum (``sum_i w_i * envelope_i``; each envelope sums to 1, so ``w_i / sum_j w_j`` is the probability of
   subformula ``i``). With ``weighting="amplitude"`` (default) ``w_i = softplus(score_i) ** 2``: the score sets
   the candidate's sqrt intensity, the space in which the loss and the bidirectional head work. With
   ``"softmax"``, ``w`` is the softmax over the molecule's candidates and the spectrum is scaled to base peak 1.
   On the fixture the amplitude form fits far faster (training-set cosine 0.90 against 0.46 after 120 Adam
   steps): under a softmax, the gradient of a candidate's sqrt intensity shrinks with the intensity itself.

The output is the square root of that spectrum, the space of every model's output.
Chlorine, bromine, sulfur and silicon clusters thus come from the physics, not from the training data.

A molecule whose subformulae cannot be enumerated (more than ``max_subformulae`` of them, or atoms without
an isotope table; :class:`~matchms_neims.subformulae.SubformulaLimit`) falls back, without isotope envelopes,
to one of two spectra (``fallback``):

- ``"nominal"`` (every model trained before the option existed): one candidate per nominal m/z
  (1 .. M + ``isotope_margin``), scored by the ``forward``/``reverse`` logits alone. Those logits are trained
  as priors of the subformula scores, not as a spectrum, and on the scaffold validation part the 28 spectra
  of fallback molecules reached a sqrt cosine of 0.477, against 0.575 from the bidirectional baseline.
- ``"bidirectional"``: a :class:`~matchms_neims.models.heads.BidirectionalHead` on the same embedding. So that
  it is trained on more than the few fallback molecules, in training mode a random
  ``fallback_training_fraction`` of the other molecules is routed to it too.

:meth:`FormulaHead.fallback_reason` tells which molecules fall back, and predicted spectra say so in their
metadata (``formula_head_fallback``).

``mode="mixed"`` mixes the formula spectrum with the bidirectional head's per m/z through a learnt sigmoid
gate (in sqrt space). Both modes share one mechanism: a gate of 1 (formula), 0 (fallback rows with
``fallback="bidirectional"``) or learnt (``"mixed"``).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from matchms_neims.models.heads import BidirectionalHead
from matchms_neims.subformulae import (
    ENVELOPE_SIZE,
    FORMULA_SIZE,
    FORMULA_SYMBOLS,
    HYDROGEN,
    LIGHT_MASS_VECTOR,
    MAX_SUBFORMULAE,
    VALENCE_VECTOR,
    SubformulaLimit,
    enumerate_subformulae,
)

HEAD_MODES = ("formula", "mixed")
FALLBACKS = ("nominal", "bidirectional")
#: Per-subformula features: counts kept, counts lost, fraction kept (per symbol), then 6 scalars.
SUBFORMULA_FEATURES = 3 * len(FORMULA_SYMBOLS) + 6
_SQRT_EPS = 1e-5  # sqrt(x + eps) - sqrt(eps): a finite gradient at empty bins


class CandidateCache:
    """Subformulae of recently seen formulas (an LRU of ``size`` entries, keyed by the count vector)."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    def get(self, counts: np.ndarray, max_subformulae: int, extra_hydrogens: int, loss_slack: int | None = None):
        key = (counts.tobytes(), max_subformulae, extra_hydrogens, loss_slack)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = enumerate_subformulae(counts, max_subformulae, extra_hydrogens, loss_slack)
            except SubformulaLimit as limit:
                entry = SubformulaLimit(str(limit))  # without the traceback, whose frames hold large arrays
            self._entries[key] = entry
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry


_CANDIDATES = CandidateCache()


def subformula_features(counts: torch.Tensor, molecule_counts: torch.Tensor, light_mass: torch.Tensor,
                        molecule_mass: torch.Tensor, max_mz: int) -> torch.Tensor:
    """Features of candidate subformulae (rows) against their molecule's formula (same rows).

    Parameters
    ----------
    counts, molecule_counts
        Float count vectors over :data:`FORMULA_SYMBOLS`, shape ``(n, n_symbols)``.
    light_mass, molecule_mass
        Lightest-isotope masses of the subformula and of the molecule, shape ``(n,)``.
    """
    valence = torch.as_tensor(VALENCE_VECTOR, dtype=counts.dtype, device=counts.device)
    # ring-plus-double-bond equivalents of the ion: 1 + sum n (v - 2) / 2; integer: odd-electron (radical) ion
    rdbe = 1 + (counts * (valence - 2)).sum(-1) / 2
    odd_electron = (torch.remainder(rdbe, 1.0) < 0.25).to(counts.dtype)
    heavy = counts.sum(-1) - counts[:, HYDROGEN]
    scalars = torch.stack([light_mass / max_mz, (molecule_mass - light_mass) / max_mz, rdbe / 10, odd_electron,
                           heavy / 20, (molecule_mass - light_mass == 0).to(counts.dtype)], dim=-1)
    return torch.cat([counts / 20, (molecule_counts - counts) / 20, counts / molecule_counts.clamp_min(1), scalars],
                     dim=-1)


def segment_softmax(score: torch.Tensor, index: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``score`` within each segment (rows sharing ``index``); torch's scatter ops, no extra import."""
    top = torch.full((n_segments,), -torch.inf, dtype=score.dtype, device=score.device)
    top = top.scatter_reduce(0, index, score.detach(), reduce="amax", include_self=True)
    exp = torch.exp(score - top[index])
    total = torch.zeros(n_segments, dtype=score.dtype, device=score.device).index_add(0, index, exp)
    return exp / total[index]


class FormulaHead(nn.Module):
    """Spectrum head over the subformulae of the molecular formula (see the module docstring).

    Parameters
    ----------
    in_features
        Size of the molecule embedding.
    max_mz
        Largest m/z predicted; the output has ``max_mz + 1`` bins.
    isotope_margin
        Bins above M that the fallback candidates and the bidirectional part (``mode="mixed"``) may fill.
    mode
        ``"formula"`` or ``"mixed"`` (formula head + bidirectional head, mixed per m/z by a gate).
    hidden
        Width of the subformula MLP ``phi`` and of the molecule projection ``g``.
    max_subformulae
        Bound on the subformulae of one molecule; above it the molecule falls back (module docstring).
    extra_hydrogens
        Hydrogens a subformula may have beyond the molecule's (hydrogen transfer, self-protonation).
    loss_slack
        Hydrogens the neutral loss may have beyond its own valence bound; ``None`` (the default, and every
        model trained before the option existed) leaves the loss unbounded (:mod:`matchms_neims.subformulae`).
    weighting
        ``"amplitude"`` or ``"softmax"`` (module docstring).
    score_bias
        Initial bias of the per-m/z logits, so that candidates start small (most subformulae are absent).
    fallback
        Spectrum of molecules over the bound: ``"nominal"`` or ``"bidirectional"`` (module docstring).
    fallback_training_fraction
        With ``fallback="bidirectional"``: the fraction of other molecules routed to the fallback head in
        training mode, so that it learns from more than the fallback molecules (0 in eval mode).
    """

    def __init__(self, in_features: int, max_mz: int = 500, isotope_margin: int = 5, mode: str = "formula",
                 hidden: int = 64, max_subformulae: int = MAX_SUBFORMULAE, extra_hydrogens: int = 1,
                 loss_slack: int | None = None, weighting: str = "amplitude", score_bias: float = -3.0,
                 fallback: str = "nominal", fallback_training_fraction: float = 0.0):
        super().__init__()
        if weighting not in ("amplitude", "softmax"):
            raise ValueError(f"unknown weighting {weighting!r}; expected 'amplitude' or 'softmax'")
        self.weighting = weighting
        if mode not in HEAD_MODES:
            raise ValueError(f"unknown formula head mode {mode!r}; expected one of {HEAD_MODES}")
        if fallback not in FALLBACKS:
            raise ValueError(f"unknown formula head fallback {fallback!r}; expected one of {FALLBACKS}")
        if not 0.0 <= fallback_training_fraction < 1.0:
            raise ValueError(f"fallback_training_fraction must be in [0, 1), got {fallback_training_fraction}")
        if fallback_training_fraction and fallback != "bidirectional":
            raise ValueError("fallback_training_fraction needs fallback='bidirectional'")
        self.mode = mode
        self.fallback = fallback
        self.fallback_training_fraction = fallback_training_fraction
        self.max_mz = max_mz
        self.n_bins = max_mz + 1
        self.isotope_margin = isotope_margin
        self.hidden = hidden
        self.max_subformulae = max_subformulae
        self.extra_hydrogens = extra_hydrogens
        self.loss_slack = loss_slack
        self.subformula_mlp = nn.Sequential(nn.Linear(SUBFORMULA_FEATURES, hidden), nn.ReLU(),
                                            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.molecule_projection = nn.Linear(in_features, hidden)
        self.forward_logits = nn.Linear(in_features, self.n_bins)
        self.reverse_logits = nn.Linear(in_features, self.n_bins)
        nn.init.constant_(self.forward_logits.bias, score_bias)  # candidates start small: most are absent
        if mode == "mixed" or fallback == "bidirectional":
            self.bidirectional = BidirectionalHead(in_features, max_mz=max_mz, isotope_margin=isotope_margin)
        if mode == "mixed":
            self.mix_gate = nn.Linear(in_features, self.n_bins)

    # ------------------------------------------------------------------ candidates
    def fallback_reason(self, counts: np.ndarray) -> str | None:
        """Why the molecule of count vector ``counts`` falls back to nominal-mass candidates (``None``: it does not).

        The answer comes from the same candidate cache as the forward pass, so a molecule just predicted is
        not enumerated again.
        """
        entry = _CANDIDATES.get(np.asarray(counts, dtype=np.int64), self.max_subformulae, self.extra_hydrogens,
                                self.loss_slack)
        if isinstance(entry, SubformulaLimit):
            if self.fallback == "bidirectional":
                return f"{entry}; the bidirectional head's spectrum, without isotope envelopes"
            return f"{entry}; nominal-mass candidates without isotope envelopes"
        return None

    def _entries(self, formula: torch.Tensor) -> tuple[np.ndarray, list]:
        """Count vectors of a batch's molecules and their candidate-cache entries (subformulae or a limit)."""
        counts_of = np.rint(formula.detach().float().cpu().numpy()).astype(np.int64)
        return counts_of, [_CANDIDATES.get(molecule, self.max_subformulae, self.extra_hydrogens, self.loss_slack)
                           for molecule in counts_of]

    def _candidates(self, counts_of: np.ndarray, entries: list, nominal_mass: torch.Tensor, skip: np.ndarray
                    ) -> tuple[torch.Tensor, ...]:
        """Flat candidate tensors of a batch: molecule index, counts, lightest mass, envelopes, molecule mass.

        Molecules where ``skip`` is true get no candidates (their rows of the formula spectrum stay zero).
        """
        masses = nominal_mass.detach().cpu().numpy().astype(np.int64)
        index, counts, light, envelopes, molecule_mass = [], [], [], [], []
        n_symbols = len(FORMULA_SYMBOLS)
        for row, (molecule, entry) in enumerate(zip(counts_of, entries)):
            if skip[row]:
                molecule_mass.append(int(masses[row]))
                continue
            if isinstance(entry, SubformulaLimit):
                n = int(min(masses[row] + self.isotope_margin, self.max_mz))  # candidates at m/z 1..n
                counts.append(np.zeros((n, n_symbols), np.float32))
                light.append(np.arange(1, n + 1))
                envelope = np.zeros((n, ENVELOPE_SIZE), np.float32)
                envelope[:, 0] = 1.0
                envelopes.append(envelope)
                molecule_mass.append(int(masses[row]))
            else:
                n = len(entry)
                counts.append(entry.counts.astype(np.float32))
                light.append(entry.light_mass)
                envelopes.append(entry.envelopes)
                molecule_mass.append(int(molecule[:n_symbols] @ LIGHT_MASS_VECTOR))
            index.append(np.full(n, row))
        device = nominal_mass.device
        if not index:  # every molecule skipped
            return (torch.zeros(0, dtype=torch.int64, device=device), torch.zeros((0, n_symbols), device=device),
                    torch.zeros(0, dtype=torch.int64, device=device),
                    torch.zeros((0, ENVELOPE_SIZE), device=device), torch.tensor(molecule_mass, device=device))
        return (torch.from_numpy(np.concatenate(index)).to(device),
                torch.from_numpy(np.concatenate(counts)).to(device),
                torch.from_numpy(np.concatenate(light).astype(np.int64)).to(device),
                torch.from_numpy(np.concatenate(envelopes)).to(device),
                torch.tensor(molecule_mass, device=device))

    def _fallback_rows(self, entries: list) -> np.ndarray:
        """Molecules that get the bidirectional head's spectrum: those over the bound and, in training mode,
        a random ``fallback_training_fraction`` of the others (torch's generator, so seeded runs repeat)."""
        rows = np.array([isinstance(entry, SubformulaLimit) for entry in entries], dtype=bool)
        if self.fallback != "bidirectional":
            return np.zeros_like(rows)
        if self.training and self.fallback_training_fraction:
            rows |= (torch.rand(len(entries)) < self.fallback_training_fraction).numpy()
        return rows

    # ------------------------------------------------------------------ forward
    def formula_spectrum(self, embedding: torch.Tensor, formula: torch.Tensor, nominal_mass: torch.Tensor,
                         skip: np.ndarray | None = None) -> torch.Tensor:
        """The rendered subformula spectrum (intensities; base peak 1 with ``weighting="softmax"``), shape
        ``(batch, max_mz + 1)``; rows of molecules where ``skip`` is true are zero."""
        counts_of, entries = self._entries(formula)
        skip = np.zeros(len(entries), dtype=bool) if skip is None else skip
        return self._formula_spectrum(embedding, formula, *self._candidates(counts_of, entries, nominal_mass, skip))

    def _formula_spectrum(self, embedding: torch.Tensor, formula: torch.Tensor, index: torch.Tensor,
                          counts: torch.Tensor, light: torch.Tensor, envelopes: torch.Tensor,
                          molecule_mass: torch.Tensor) -> torch.Tensor:
        molecule_counts = formula[:, : len(FORMULA_SYMBOLS)].to(embedding.dtype)
        features = subformula_features(counts.to(embedding.dtype), molecule_counts[index], light.to(embedding.dtype),
                                       molecule_mass[index].to(embedding.dtype), self.max_mz)
        phi = self.subformula_mlp(features)
        g = self.molecule_projection(embedding)
        forward_logits = self.forward_logits(embedding)
        reverse_logits = self.reverse_logits(embedding)
        loss_mass = molecule_mass[index] - light
        score = (phi * g[index]).sum(-1) / math.sqrt(self.hidden)
        score = score + forward_logits[index, light.clamp(0, self.max_mz)]
        reverse = reverse_logits[index, loss_mass.clamp(0, self.max_mz)]
        score = score + torch.where((loss_mass >= 0) & (loss_mass <= self.max_mz), reverse, torch.zeros_like(reverse))
        if self.weighting == "softmax":
            weight = segment_softmax(score, index, embedding.shape[0])
        else:  # "amplitude": each candidate's sqrt intensity, as the bidirectional head predicts sqrt intensities
            weight = nn.functional.softplus(score).square()
        positions = light.view(-1, 1) + torch.arange(ENVELOPE_SIZE, device=light.device).view(1, -1)
        inside = positions <= self.max_mz
        flat = (index.view(-1, 1) * self.n_bins + positions.clamp(max=self.max_mz)).view(-1)
        contribution = (weight.view(-1, 1) * envelopes.to(weight.dtype) * inside).view(-1)
        spectrum = torch.zeros(embedding.shape[0] * self.n_bins, dtype=weight.dtype, device=weight.device)
        spectrum = spectrum.index_add(0, flat, contribution).view(-1, self.n_bins)
        if self.weighting == "softmax":
            return spectrum / spectrum.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return spectrum

    def forward(self, embedding: torch.Tensor, nominal_mass: torch.Tensor, formula: torch.Tensor) -> torch.Tensor:
        """Predicted spectra in sqrt-intensity space (base peak about 1), shape ``(batch, max_mz + 1)``.

        ``formula`` holds one :func:`~matchms_neims.subformulae.formula_counts` vector per molecule.
        """
        counts_of, entries = self._entries(formula)
        fallback_rows = self._fallback_rows(entries)
        candidates = self._candidates(counts_of, entries, nominal_mass, fallback_rows)
        intensities = self._formula_spectrum(embedding, formula, *candidates)
        sqrt_spectrum = torch.sqrt(intensities + _SQRT_EPS) - math.sqrt(_SQRT_EPS)
        if self.mode == "formula" and (self.fallback == "nominal" or (not self.training and not fallback_rows.any())):
            return sqrt_spectrum  # (in training, the fallback head always runs, so DDP sees all its parameters)
        if self.mode == "mixed":
            gate = torch.sigmoid(self.mix_gate(embedding))
        else:
            gate = torch.ones_like(sqrt_spectrum)
        gate = gate.masked_fill(torch.from_numpy(fallback_rows).to(gate.device).view(-1, 1), 0.0)
        return gate * sqrt_spectrum + (1.0 - gate) * self.bidirectional(embedding, nominal_mass)


#: Spectrum heads a model config may name (``head``): the bidirectional head and the formula head's modes.
HEAD_KINDS = ("bidirectional", *HEAD_MODES)


def make_spectrum_head(kind: str, in_features: int, max_mz: int, isotope_margin: int,
                       options: dict | None = None) -> nn.Module:
    """The spectrum head ``kind`` of :data:`HEAD_KINDS`; ``options`` are :class:`FormulaHead` keywords."""
    if kind == "bidirectional":
        if options:
            raise ValueError(f"the bidirectional head takes no formula_head options, got {sorted(options)}")
        return BidirectionalHead(in_features, max_mz=max_mz, isotope_margin=isotope_margin)
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown spectrum head {kind!r}; expected one of {HEAD_KINDS}")
    return FormulaHead(in_features, max_mz=max_mz, isotope_margin=isotope_margin, mode=kind, **(options or {}))


def split_formula_input(features: torch.Tensor, with_formula: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model input as ``(fingerprint, formula)``: with a formula head, the last :data:`FORMULA_SIZE` columns
    are the formula count vector (see :class:`~matchms_neims.featurize.Featurizer`'s ``formula``)."""
    if not with_formula:
        return features, None
    return features[:, :-FORMULA_SIZE], features[:, -FORMULA_SIZE:]


def apply_head(head: nn.Module, embedding: torch.Tensor, nominal_mass: torch.Tensor,
               formula: torch.Tensor | None) -> torch.Tensor:
    """Run a spectrum head of :func:`make_spectrum_head`, giving the formula to heads that read it."""
    if isinstance(head, FormulaHead):
        if formula is None:
            raise ValueError("a formula head needs the formula count vector in the model input")
        return head(embedding, nominal_mass, formula)
    return head(embedding, nominal_mass)
