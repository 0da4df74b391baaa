"""The boundary with matchms: filter order, predicted records, the EI preset, the similarity, and workflow files
run in a fresh process (issue 17, items 1-4)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from matchms import Spectrum, SpectrumProcessor, calculate_scores
from matchms.filtering import require_correct_ionmode, require_correct_ms_level
from matchms.Pipeline import create_workflow
from matchms.similarity import CosineGreedy

from matchms_neims.filters import EI_LIBRARY_CLEANING, add_predicted_spectrum, predicted_spectrum_step
from matchms_neims.io import load_spectra, write_spectra
from matchms_neims.search import search_library
from matchms_neims.similarity import NeimsCosine
from matchms_neims.utils import file_sha256


def _experimental_record() -> Spectrum:
    return Spectrum(mz=np.array([18.0, 31.0, 45.0, 46.0]), intensities=np.array([0.3, 1.0, 0.5, 0.2]),
                    metadata={"compound_name": "ethanol", "smiles": "CCO", "spectrum_id": "MSBNK-X-JP000001",
                              "instrument": "VARIAN MAT-44", "instrument_type": "EI-B", "license": "CC BY-NC-SA",
                              "num_peaks": 4, "retention_index": 463, "cas": "64-17-5"},
                    metadata_harmonization=False)


def test_plugin_filters_take_their_place_before_matchms_peak_filters(tiny_model_path):
    processor = SpectrumProcessor([("select_by_mz", {"mz_from": 50.0, "mz_to": 1000.0}), "require_parsable_smiles",
                                   (add_predicted_spectrum, {"predictor": str(tiny_model_path)}),
                                   "normalize_intensities", "derive_inchikey_from_inchi"])
    order = [step.__name__ for step in processor.filters]
    assert order == ["derive_inchikey_from_inchi", "require_parsable_smiles", "add_predicted_spectrum",
                     "normalize_intensities", "select_by_mz"]
    record = _experimental_record()
    record.set("smiles", "CCCCCCCCCCO")  # decanol: predicted peaks below m/z 50 exist
    spectra, _ = processor.process_spectra([record], progress_bar=False, create_report=True)
    assert spectra[0].peaks.mz.min() >= 50.0  # select_by_mz acted on the predicted peaks


def test_predicted_spectrum_is_a_new_record_that_matchms_requirements_accept(tiny_predictor):
    record = _experimental_record()
    predicted = add_predicted_spectrum(record, predictor=tiny_predictor)
    metadata = predicted.metadata
    assert metadata["spectrum_id"] == f"{tiny_predictor.model_name}:{metadata['inchikey']}"
    assert metadata["source_spectrum_id"] == "MSBNK-X-JP000001"
    for key in ("instrument", "instrument_type", "license", "num_peaks"):
        assert key not in metadata, key
    assert metadata["retention_index"] == 463 and metadata["cas"] == "64-17-5"  # compound annotations stay
    assert (metadata["ionmode"], metadata["ms_level"], metadata["ionization"], metadata["ionization_energy"]) == (
        "positive", "1", "EI", "70 eV")
    assert require_correct_ms_level(predicted, required_ms_level=1) is predicted
    assert require_correct_ionmode(predicted, "positive") is predicted
    # clone=False works on the input object (matchms convention)
    same = add_predicted_spectrum(record, predictor=tiny_predictor, clone=False)
    assert same is record and record.get("predicted") is True and "license" not in record.metadata


def test_ei_preset_keeps_massbank_records_and_logs_no_precursor_warning(fixtures_dir, caplog):
    spectra = load_spectra(fixtures_dir / "massbank_mini.msp")
    with caplog.at_level(logging.INFO, logger="matchms"):
        kept, report = SpectrumProcessor(EI_LIBRARY_CLEANING).process_spectra(spectra, progress_bar=False,
                                                                              create_report=True)
    assert len(kept) >= 0.8 * len(spectra)  # the cleaning filters drop few records of a clean library
    assert not [r for r in caplog.records if "precursor" in r.getMessage().lower()]
    assert all(s.peaks.intensities.max() == pytest.approx(1.0) for s in kept)
    # matchms's LC-MS default presets drop all of them (require_precursor_mz), which is why this preset exists
    from matchms.filtering.default_pipelines import DEFAULT_FILTERS

    assert SpectrumProcessor(DEFAULT_FILTERS).process_spectra(spectra, progress_bar=False)[0] == []


def test_neims_cosine_equals_search_and_cosine_greedy(fixtures_dir):
    spectra = load_spectra(fixtures_dir / "massbank_mini.msp")[:6]
    similarity = NeimsCosine()
    matrix = similarity.matrix(spectra, spectra)
    greedy = CosineGreedy(tolerance=0.5, mz_power=1.0, intensity_power=0.5).matrix(spectra, spectra,
                                                                                       progress_bar=False)
    np.testing.assert_allclose(matrix["score"], greedy["score"], atol=1e-6)
    np.testing.assert_array_equal(matrix["matches"], greedy["matches"])
    pair = similarity.pair(spectra[0], spectra[1])
    assert pair["score"] == pytest.approx(matrix["score"][0, 1], abs=1e-9)
    result = search_library(spectra, spectra, top_k=3)  # search's defaults are the similarity's defaults
    for query, hits in enumerate(result.hits):
        for hit in hits:
            assert hit.score == pytest.approx(matrix["score"][hit.library_index, query], abs=1e-6)
    scores = calculate_scores(spectra, spectra, similarity, array_type="sparse")
    assert scores.score_names == ("NeimsCosine_score", "NeimsCosine_matches")
    np.testing.assert_allclose(scores.to_array("NeimsCosine_score"), matrix["score"], atol=1e-12)


def test_workflow_yaml_runs_in_a_fresh_process(tmp_path, tiny_model_path, fixtures_dir):
    """A workflow naming the plugin's filter and similarity, written by create_workflow, run by the CLI verb."""
    candidates = tmp_path / "candidates.msp"
    write_spectra([Spectrum(mz=np.array([10.0]), intensities=np.array([1.0]),
                            metadata={"compound_name": name, "smiles": smiles}, metadata_harmonization=False)
                   for name, smiles in [("broken", "C1CC"), ("ethanol", "CCO"), ("toluene", "Cc1ccccc1")]],
                  candidates)
    workflow = tmp_path / "workflow.yaml"
    create_workflow(str(workflow), query_filters=["require_peaks"],
                    reference_filters=[predicted_spectrum_step(tiny_model_path),
                                       ("select_by_mz", {"mz_from": 10.0, "mz_to": 1000.0})],
                    score_computations=[["neimscosine", {}]])
    text = workflow.read_text()
    assert file_sha256(tiny_model_path) in text and "neimscosine" in text
    hits, scores = tmp_path / "hits.tsv", tmp_path / "scores.json"
    done = subprocess.run([sys.executable, "-m", "matchms_neims.cli", "pipeline", str(workflow),
                           str(fixtures_dir / "massbank_mini.msp"), str(candidates), "-o", str(hits),
                           "--top-k", "2", "--scores", str(scores)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "No precursor_mz" not in done.stderr
    rows = [line.split("\t") for line in hits.read_text().splitlines()]
    header, body = rows[0], rows[1:]
    assert header[:5] == ["query_index", "query_name", "query_id", "rank", "score"]
    assert body and {row[header.index("reference_name")] for row in body} <= {"ethanol", "toluene"}
    # indices are positions in the input files, also after a filter dropped a spectrum before them
    assert {(row[header.index("reference_name")], row[header.index("reference_index")]) for row in body} <= \
        {("ethanol", "1"), ("toluene", "2")}
    assert all(row[header.index("reference_predicted")] == "true" for row in body)
    resolved = (tmp_path / "hits.tsv.workflow.yaml").read_text()
    assert str(tiny_model_path) in resolved and file_sha256(tiny_model_path) in resolved
    assert json.loads(scores.read_text())
    # a workflow whose model file changed is refused, naming both digests
    tampered = text.replace(file_sha256(tiny_model_path), "0" * 64)  # YAML reads this digest as the number 0
    workflow.write_text(tampered)
    done = subprocess.run([sys.executable, "-m", "matchms_neims.cli", "pipeline", str(workflow), str(candidates),
                           "-o", str(tmp_path / "other.tsv")], capture_output=True, text=True, timeout=300)
    expected = f"has sha256 {file_sha256(tiny_model_path)}, but the workflow names 0"
    assert done.returncode == 2 and expected in done.stderr


def test_review_mends(tmp_path, tiny_predictor, fixtures_dir):
    """Structure keys of a salt's record do not survive; .msp.gz libraries are read; the bundled model is pinned
    portably (predictor None plus its digest)."""
    import gzip

    from matchms_neims.io import iter_records
    from matchms_neims.predictor import bundled_model_path

    salt = Spectrum(mz=np.array([10.0]), intensities=np.array([1.0]), metadata_harmonization=False,
                    metadata={"smiles": "C[NH3+].[Cl-]", "inchi": "InChI=1S/CH5N.ClH/c1-2;/h2H2,1H3;1H",
                              "formula": "CH6ClN"})
    predicted = add_predicted_spectrum(salt, predictor=tiny_predictor)
    assert predicted.get("smiles") == "CN" and predicted.get("formula") == "CH5N" and predicted.get("inchi") is None
    packed = tmp_path / "lib.msp.gz"
    packed.write_bytes(gzip.compress((fixtures_dir / "massbank_mini.msp").read_bytes()))
    assert len(list(iter_records(packed))) == len(list(iter_records(fixtures_dir / "massbank_mini.msp")))
    name, params = predicted_spectrum_step()
    assert name == "add_predicted_spectrum" and params["predictor"] is None
    assert params["model_sha256"] == file_sha256(bundled_model_path())
