"""Cleaning filters drop the records they should, with reasons, and work as matchms filters."""

from __future__ import annotations

import numpy as np
from matchms import Spectrum, SpectrumProcessor

from matchms_neims.cleaning import CleaningConfig, clean_spectra
from matchms_neims.filters import (
    require_mass_in_range,
    require_not_derivative,
    require_parsable_smiles,
    require_peaks,
    require_structure_consistency,
)
from matchms_neims.io import load_spectra


def make(smiles, mz, intensities, **metadata):
    return Spectrum(mz=np.asarray(mz, float), intensities=np.asarray(intensities, float),
                    metadata={"smiles": smiles, "compound_name": metadata.pop("name", smiles), **metadata},
                    metadata_harmonization=False)


def test_structure_consistency():
    # toluene, M = 92.06: M+1 and M+2 isotope peaks are fine
    toluene = make("Cc1ccccc1", [65, 91, 92, 93, 94], [80, 999, 600, 45, 3])
    assert require_structure_consistency(toluene) is not None
    # a TMS derivative recorded with the parent SMILES: strong peaks far above M
    glycine_tms = make("NCC(=O)O", [73, 147, 204, 219], [999, 300, 500, 40])
    assert require_structure_consistency(glycine_tms) is None
    # a weak background peak above M is tolerated, a significant one is not
    assert require_structure_consistency(make("Cc1ccccc1", [91, 92, 207], [999, 600, 10])) is not None
    assert require_structure_consistency(make("Cc1ccccc1", [91, 92, 207], [999, 600, 100])) is None
    # chlorine isotopes widen the window: C6Cl6, M = 282 (35Cl6), M+6 is genuine
    hexachlorobenzene = make("Clc1c(Cl)c(Cl)c(Cl)c(Cl)c1Cl", [282, 284, 286, 288], [520, 999, 800, 340])
    assert require_structure_consistency(hexachlorobenzene) is not None


def test_other_filters():
    assert require_not_derivative(make("CCO", [31], [1], derivative_type="1 TMS")) is None
    assert require_not_derivative(make("CCO", [31], [1])) is not None
    assert require_parsable_smiles(make("C1CC", [31], [1])) is None
    assert require_parsable_smiles(make("CCO", [31], [1])) is not None
    assert require_peaks(make("CCO", [], [])) is None
    triacontane = make("C" * 30, [57], [1])  # C30H62, M+ at m/z 422
    assert require_mass_in_range(triacontane, max_mz=500) is not None
    assert require_mass_in_range(triacontane, max_mz=400) is None
    spectrum = make("CCO", [31], [1])
    assert require_peaks(spectrum, clone=True) is not spectrum
    assert require_peaks(spectrum, clone=False) is spectrum
    assert require_peaks(None) is None


def test_clean_spectra_reports_counts_and_reasons(fixtures_dir):
    spectra = load_spectra(fixtures_dir / "massbank_mini.msp")
    kept, report = clean_spectra(spectra, CleaningConfig(), progress=False)
    assert report.n_input == len(spectra) == 117
    assert report.n_kept == len(kept)
    assert report.removed["require_not_derivative"] == 6  # the fixture holds six marked derivatives
    assert sum(report.removed.values()) == report.n_input - report.n_kept
    assert len(report.reasons) == sum(report.removed.values())
    record, step, reason = report.reasons[0]
    assert record and step in report.removed and reason
    assert "require_not_derivative: removed 6" in str(report)
    assert all(s.get("derivative_type") is None for s in kept)


def test_filters_in_a_matchms_processor(fixtures_dir):
    spectra = load_spectra(fixtures_dir / "massbank_mini.msp")
    processor = SpectrumProcessor(["require_peaks", "require_not_derivative", "require_structure_consistency"])
    processed, report = processor.process_spectra(spectra, progress_bar=False, create_report=True)
    assert len(processed) < len(spectra)
    assert report.counter_removed_spectra["require_not_derivative"] == 6
