"""Tests of matchms_neims.evaluation: evaluate_model on a tiny predictor whose own predictions are the 'experiments'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matchms_neims.chemistry import describe, inchikey_block, parse_smiles
from matchms_neims.evaluation import SpectraSet, evaluate_model, format_report, report_to_json

# hexadecane (226 Da) falls in the 200-300 Da bin, the others below 200 Da
QUERY_SMILES = ["CCO", "CC(=O)C", "c1ccccc1", "Oc1ccccc1", "ClC(Cl)Cl", "CCCCCCCCCCCCCCCC"]
BACKGROUND_SMILES = ["CCCCO", "CC(C)O", "CCN(CC)CC", "OCC(O)CO"]
DECOY_SMILES = ["CCCCCCCC", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "OCC"]  # "OCC" is ethanol, a query molecule
KS = ("recall@1", "recall@5", "recall@10", "recall@20")


def key_of(smiles: str) -> str:
    return inchikey_block(describe(parse_smiles(smiles)).inchikey)


def predicted_set(predictor, smiles: list[str]) -> SpectraSet:
    vectors = predictor.predict_batch(smiles).vectors
    assert len(vectors) == len(smiles)
    return SpectraSet(vectors.astype(np.float32), list(smiles), [key_of(s) for s in smiles])


@pytest.fixture(scope="module")
def queries(tiny_predictor) -> SpectraSet:
    return predicted_set(tiny_predictor, QUERY_SMILES)


@pytest.fixture(scope="module")
def background(tiny_predictor) -> SpectraSet:
    """Spectra of 4 other molecules plus 2 rows of query molecules (which must not enter the library)."""
    other = predicted_set(tiny_predictor, BACKGROUND_SMILES)
    rng = np.random.default_rng(0)
    noise = rng.random((2, other.vectors.shape[1])).astype(np.float32)
    return SpectraSet(np.concatenate([other.vectors, noise]), other.smiles + ["CCO", "c1ccccc1"],
                      other.keys + [key_of("CCO"), key_of("c1ccccc1")])


@pytest.fixture(scope="module")
def report(tiny_predictor, queries, background) -> dict:
    return evaluate_model(tiny_predictor, queries, background, decoy_smiles=DECOY_SMILES, timing_molecules=3)


def test_keys_are_distinct(queries, background):
    assert len(set(queries.keys)) == len(QUERY_SMILES)
    assert not set(background.keys[:4]) & set(queries.keys)
    assert key_of("OCC") == key_of("CCO")


def test_perfect_predictions_score_one(report):
    assert report["n_query_spectra"] == 6
    assert report["n_query_molecules"] == 6
    assert report["n_unpredictable_molecules"] == 0
    metrics = report["metrics"]
    for name in ("cosine_sqrt", "cosine_neims", "cosine_stein", "top5_peak_recall", "top10_peak_recall",
                 "top20_peak_recall", "peak_detection_rate"):
        assert metrics[name]["mean"] == pytest.approx(1.0, abs=1e-5), name
    assert metrics["cosine_sqrt"]["median"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["cosine_sqrt"]["std"] == pytest.approx(0.0, abs=1e-5)
    for name in ("mae", "rmse", "false_positive_rate"):
        assert metrics[name]["mean"] == pytest.approx(0.0, abs=1e-6), name
    matching = report["library_matching"]
    assert set(KS) <= set(matching)
    assert all(matching[k] == 1.0 for k in KS)
    assert matching["mean_rank"] == 1.0


def test_library_composition(report):
    # 4 background rows of other molecules (the 2 rows of query molecules dropped) + 6 query predictions
    # + 2 decoys ("OCC" is ethanol, a query molecule, and is dropped)
    assert report["n_decoys"] == 2
    assert report["library_size"] == 4 + 6 + 2
    assert report["library_weighting"] == {"mz_power": 1.0, "intensity_power": 0.5}


def test_breakdowns(report):
    breakdowns = report["breakdowns"]
    assert set(breakdowns) == {"molecular_weight", "element_class", "complexity"}
    by_mass = breakdowns["molecular_weight"]
    assert by_mass["<200 Da"]["n_spectra"] == 5
    assert by_mass["200-300 Da"]["n_spectra"] == 1  # hexadecane
    assert ">=300 Da" not in by_mass
    by_element = breakdowns["element_class"]
    assert by_element["Cl/Br"]["n_spectra"] == 1  # chloroform
    assert by_element["none"]["n_spectra"] == 5
    assert not {"S", "Si", "P", "F"} & set(by_element)
    for title in breakdowns:
        assert sum(entry["n_spectra"] for entry in breakdowns[title].values()) == 6
        for entry in breakdowns[title].values():
            assert entry["cosine_sqrt"] == pytest.approx(1.0, abs=1e-5)
            assert entry["recall@1"] == 1.0
            assert set(KS) <= set(entry)


def test_mass_filter_variant(report):
    filtered = report["library_matching_mass_filter"]
    assert filtered["window_da"] == 5.0
    assert all(filtered[k] == 1.0 for k in KS)


def test_mass_filter_removes_competitors_outside_the_window():
    from matchms_neims.metrics import library_ranks

    queries = np.array([[0, 1, 1, 0]], dtype=np.float32)
    library = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0.9, 0]], dtype=np.float32)  # a tie, a near miss
    keys = ["A", "B", "A"]
    assert library_ranks(queries, ["A"], library, keys, 0.0, 1.0)[0] == 2  # the identical spectrum of B ties
    ranks = library_ranks(queries, ["A"], library, keys, 0.0, 1.0, query_masses=np.array([100.0]),
                          library_masses=np.array([100.0, 110.0, 100.0]), mass_window=5.0)
    assert ranks[0] == 1  # B (110 Da) is outside +-5 Da
    with pytest.raises(ValueError, match="masses"):
        library_ranks(queries, ["A"], library, keys, mass_window=5.0)


def test_inference_time(report):
    timing = report["inference_time"]
    assert timing["n_molecules"] == 3
    for name in ("single_mean_ms", "single_p95_ms", "single_p99_ms", "batch_ms_per_molecule"):
        assert timing[name] > 0
    assert timing["single_p95_ms"] <= timing["single_p99_ms"]
    assert report["model"]["name"] == "tiny" and report["model"]["version"] == "0.0"


def test_format_report_and_json(report):
    text = format_report(report)
    assert "recall@10" in text and "cosine_stein" in text and "by molecular weight:" in text
    loaded = json.loads(report_to_json(report))
    assert loaded["library_size"] == report["library_size"]
    assert loaded["library_matching"]["recall@10"] == 1.0
    assert loaded["metrics"]["cosine_sqrt"]["mean"] == pytest.approx(report["metrics"]["cosine_sqrt"]["mean"])


def test_other_molecule_with_same_spectrum_costs_a_rank(tiny_predictor, queries):
    """A background molecule whose spectrum equals a query's prediction ties with it: rank 2 for that query."""
    copy = SpectraSet(queries.vectors[:1].copy(), ["CCCCO"], [key_of("CCCCO")])
    report = evaluate_model(tiny_predictor, queries, copy, timing_molecules=0)
    assert report["library_size"] == 1 + 6 and report["n_decoys"] == 0
    assert report["library_matching"]["recall@1"] == pytest.approx(5 / 6)
    assert report["library_matching"]["recall@5"] == 1.0
    assert report["library_matching"]["mean_rank"] == pytest.approx(7 / 6)
    assert "inference_time" not in report


def test_repeated_spectra_of_one_molecule(tiny_predictor, queries):
    """Two query spectra of one molecule are two queries, one molecule and one library entry."""
    doubled = SpectraSet(np.concatenate([queries.vectors, queries.vectors[:1]]), queries.smiles + ["OCC"],
                         queries.keys + [queries.keys[0]])
    report = evaluate_model(tiny_predictor, doubled, timing_molecules=0)
    assert report["n_query_spectra"] == 7
    assert report["n_query_molecules"] == 6
    assert report["library_size"] == 6
    assert report["library_matching"]["recall@1"] == 1.0


def _with_unparsable(queries: SpectraSet, first: bool) -> SpectraSet:
    bad_vector = np.zeros((1, queries.vectors.shape[1]), np.float32)
    bad_vector[0, 42] = 1.0
    if first:
        return SpectraSet(np.concatenate([bad_vector, queries.vectors]), ["not a smiles"] + queries.smiles,
                          ["UNPARSABLE"] + queries.keys)
    return SpectraSet(np.concatenate([queries.vectors, bad_vector]), queries.smiles + ["not a smiles"],
                      queries.keys + ["UNPARSABLE"])


def test_unparsable_query_smiles_is_counted_without_timing(tiny_predictor, queries):
    report = evaluate_model(tiny_predictor, _with_unparsable(queries, first=False), timing_molecules=0)
    assert report["n_unpredictable_molecules"] == 1
    assert report["n_query_spectra"] == 6
    assert report["n_query_molecules"] == 6
    assert report["library_size"] == 6
    assert report["library_matching"]["recall@1"] == 1.0


@pytest.mark.parametrize("first", [True, False])
def test_unparsable_query_smiles_does_not_crash_with_timing(tiny_predictor, queries, first):
    report = evaluate_model(tiny_predictor, _with_unparsable(queries, first), timing_molecules=10)
    assert report["n_unpredictable_molecules"] == 1
    assert report["n_query_spectra"] == 6
    assert report["library_matching"]["recall@1"] == 1.0
    assert report["inference_time"]["n_molecules"] == 6


def test_expert_routing_shows_an_expert_that_is_chosen_but_weighted_near_zero():
    from matchms_neims.evaluation import expert_routing

    weights = np.array([[0.6, 0.0, 0.4, 0.0], [0.0, 0.9995, 0.0, 0.0005], [0.5, 0.0, 0.0, 0.5], [0.0, 0.7, 0.3, 0.0]])
    routing = expert_routing(weights)
    assert routing["expert_3"]["chosen"] == 0.5
    assert routing["expert_3"]["mean_weight_when_chosen"] == pytest.approx((0.0005 + 0.5) / 2)
    assert routing["expert_1"] == {"chosen": 0.5, "mean_weight_when_chosen": pytest.approx(0.84975)}
