"""Cleaning a set of experimental EI spectra before training or evaluation, with a report of what was dropped."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from matchms import Spectrum
from tqdm.auto import tqdm

from matchms_neims.filters._checks import (
    consistency_problem,
    derivative_problem,
    empty_problem,
    mass_range_problem,
    record_label,
    smiles_problem,
)

logger = logging.getLogger(__name__)


@dataclass
class CleaningConfig:
    """Settings of :func:`clean_spectra` (mirrors the ``cleaning`` section of the training configs)."""

    max_mz: int = 500
    min_relative_intensity: float = 0.02
    isotope_window: float = 3.5
    drop_derivatives: bool = True
    require_consistency: bool = True


@dataclass
class CleaningReport:
    """How many records each cleaning step removed, and why (record label -> reason)."""

    n_input: int = 0
    n_kept: int = 0
    removed: Counter = field(default_factory=Counter)
    reasons: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, step: str, record: str, reason: str) -> None:
        self.removed[step] += 1
        self.reasons.append((record, step, reason))

    def __str__(self) -> str:
        lines = [f"cleaning: {self.n_input} records in, {self.n_kept} kept"]
        lines += [f"  {step}: removed {count}" for step, count in self.removed.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"n_input": self.n_input, "n_kept": self.n_kept, "removed": dict(self.removed)}


def _steps(config: CleaningConfig):
    yield "require_peaks", empty_problem
    yield "require_parsable_smiles", smiles_problem
    if config.drop_derivatives:
        yield "require_not_derivative", derivative_problem
    yield "require_mass_in_range", lambda s: mass_range_problem(s, config.max_mz)
    if config.require_consistency:
        yield "require_structure_consistency", lambda s: consistency_problem(
            s, config.min_relative_intensity, config.isotope_window)


def clean_spectra(spectra: Iterable[Spectrum], config: CleaningConfig | None = None,
                  progress: bool = True) -> tuple[list[Spectrum], CleaningReport]:
    """Apply the cleaning filters in order and report what each removed.

    The steps are the checks behind the matchms filters :func:`~matchms_neims.filters.require_peaks`,
    :func:`~matchms_neims.filters.require_parsable_smiles`,
    :func:`~matchms_neims.filters.require_not_derivative`,
    :func:`~matchms_neims.filters.require_mass_in_range` and
    :func:`~matchms_neims.filters.require_structure_consistency`.

    Returns
    -------
    kept, report
        The spectra that passed every step (same objects, not copies) and a :class:`CleaningReport`.
    """
    config = config or CleaningConfig()
    steps = list(_steps(config))
    report = CleaningReport()
    kept = []
    for spectrum in tqdm(spectra, desc="cleaning", unit="spectra", disable=not progress):
        report.n_input += 1
        for step, check in steps:
            reason = check(spectrum)
            if reason is not None:
                report.add(step, record_label(spectrum), reason)
                break
        else:
            kept.append(spectrum)
    report.n_kept = len(kept)
    logger.info("%s", report)
    return kept, report
