"""add_predicted_spectrum inside matchms SpectrumProcessor and a Pipeline written to and loaded from YAML."""

from __future__ import annotations

import numpy as np
from matchms import Pipeline, SpectrumProcessor
from matchms.Pipeline import create_workflow
from matchms.yaml_file_functions import load_workflow_from_yaml_file

from matchms_neims.filters import add_predicted_spectrum
from matchms_neims.io import write_spectra


def _candidates():
    from matchms import Spectrum

    rows = [("ethanol", "CCO"), ("broken", "C1CC"), ("toluene", "Cc1ccccc1")]
    return [Spectrum(mz=np.array([10.0]), intensities=np.array([1.0]), metadata={"compound_name": n, "smiles": s},
                     metadata_harmonization=False) for n, s in rows]


def test_filter_directly(tiny_predictor):
    spectrum = _candidates()[2]
    predicted = add_predicted_spectrum(spectrum, predictor=tiny_predictor)
    assert predicted is not spectrum and spectrum.peaks.mz.tolist() == [10.0]  # input untouched (clone)
    assert predicted.get("compound_name") == "toluene" and predicted.get("predicted") is True
    assert predicted.peaks.mz.max() <= 97 and predicted.peaks.intensities.max() == 1.0
    assert add_predicted_spectrum(_candidates()[1], predictor=tiny_predictor) is None
    assert add_predicted_spectrum(None, predictor=tiny_predictor) is None


def test_filter_in_spectrum_processor(tiny_model_path):
    processor = SpectrumProcessor([(add_predicted_spectrum, {"predictor": str(tiny_model_path)})])
    spectra, report = processor.process_spectra(_candidates(), progress_bar=False, create_report=True)
    assert [s.get("compound_name") for s in spectra] == ["ethanol", "toluene"]
    assert report.counter_removed_spectra["add_predicted_spectrum"] == 1


def test_filter_in_pipeline_from_yaml(tmp_path, tiny_model_path):
    candidates = tmp_path / "candidates.msp"
    write_spectra(_candidates(), candidates)
    yaml_file = tmp_path / "workflow.yaml"
    create_workflow(str(yaml_file), query_filters=[(add_predicted_spectrum, {"predictor": str(tiny_model_path)})],
                    score_computations=[["cosinegreedy", {"tolerance": 0.5}]])
    text = yaml_file.read_text()
    assert "add_predicted_spectrum" in text and str(tiny_model_path) in text
    workflow = load_workflow_from_yaml_file(str(yaml_file))
    pipeline = Pipeline(workflow, progress_bar=False)
    pipeline.run(str(candidates), str(candidates))
    queries = pipeline.spectra_queries
    assert [s.get("compound_name") for s in queries] == ["ethanol", "toluene"]
    assert all(s.get("predicted") for s in queries)
    assert pipeline.scores.shape[:2] == (3, 2)
