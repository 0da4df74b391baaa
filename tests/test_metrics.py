"""Tests of matchms_neims.metrics with hand-computable expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matchms import Spectrum
from matchms.similarity import CosineGreedy

from matchms_neims.metrics import (
    COSINE_WEIGHTINGS,
    intensity_errors,
    isotope_ratio_agreement,
    library_ranks,
    paired_cosine,
    peak_detection,
    recall_at_k,
    spectrum_metrics,
    summarize,
    top_k_peak_recall,
)
from matchms_neims.spectra import weighted_unit_vectors


def vector(peaks: dict[int, float], n_bins: int = 101, dtype=np.float64) -> np.ndarray:
    """Spectrum vector with the given {m/z: intensity} peaks."""
    out = np.zeros(n_bins, dtype=dtype)
    for mz, intensity in peaks.items():
        out[mz] = intensity
    return out


def stack(*peak_dicts: dict[int, float], n_bins: int = 101) -> np.ndarray:
    return np.stack([vector(peaks, n_bins) for peaks in peak_dicts])


def as_spectrum(row: np.ndarray) -> Spectrum:
    mz = np.flatnonzero(row > 0)
    return Spectrum(mz=mz.astype(np.float64), intensities=row[mz].astype(np.float64), metadata={})


# --------------------------------------------------------------------------- cosine


def random_spectra(rng: np.random.Generator, n: int, n_bins: int = 501, n_peaks: int = 40) -> np.ndarray:
    out = np.zeros((n, n_bins), dtype=np.float32)
    for row in out:
        mz = rng.choice(np.arange(1, n_bins), size=n_peaks, replace=False)
        row[mz] = rng.random(n_peaks).astype(np.float32)
        row /= row.max()
    return out


@pytest.mark.parametrize("weighting", sorted(COSINE_WEIGHTINGS))
def test_paired_cosine_equals_matchms_cosine_greedy(weighting):
    mz_power, intensity_power = COSINE_WEIGHTINGS[weighting]
    rng = np.random.default_rng(42)
    predicted = random_spectra(rng, 6)
    true = random_spectra(rng, 6)
    true[0] = predicted[0]  # identical pair
    true[1, :] = 0  # share half of the peaks with the prediction
    true[1, 250:] = predicted[1, 250:]
    true[1] /= true[1].max()
    ours = paired_cosine(predicted, true, mz_power, intensity_power)
    similarity = CosineGreedy(tolerance=0.5, mz_power=mz_power, intensity_power=intensity_power)
    expected = [float(similarity.pair(as_spectrum(t), as_spectrum(p))["score"]) for p, t in zip(predicted, true)]
    assert ours.shape == (6,)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    assert ours[0] == pytest.approx(1.0, abs=1e-6)
    assert 0 < ours[1] < 1


def test_paired_cosine_hand_examples():
    a = stack({1: 1.0, 3: 1.0}, {2: 1.0}, {2: 1.0}, n_bins=4)
    b = stack({1: 1.0, 2: 1.0}, {3: 1.0}, {}, n_bins=4)
    # unweighted: <a, b> = 1, |a| = |b| = sqrt(2) -> 1/2; disjoint -> 0; empty -> 0
    np.testing.assert_allclose(paired_cosine(a, b, 0.0, 1.0), [0.5, 0.0, 0.0], atol=1e-7)
    # m/z weighting: a -> (1, 3 at m/z 3), b -> (1, 2 at m/z 2): 1 / (sqrt(10) sqrt(5))
    np.testing.assert_allclose(paired_cosine(a, b, 1.0, 1.0)[0], 1 / math.sqrt(50), atol=1e-7)
    # intensity power 0.5: a = (1 at 1, 0.25 at 2), b = (1 at 1, 0.25 at 3) -> weighted (1, .5) and (1, .5)
    c = stack({1: 1.0, 2: 0.25}, n_bins=4)
    d = stack({1: 1.0, 3: 0.25}, n_bins=4)
    np.testing.assert_allclose(paired_cosine(c, d, 0.0, 0.5), [1 / 1.25], atol=1e-7)


def test_weighted_unit_vectors_unit_rows_and_empty_rows_stay_zero():
    vectors = stack({10: 1.0, 20: 0.5}, {}, n_bins=30)
    normed = weighted_unit_vectors(vectors, 1.0, 0.5)
    assert np.linalg.norm(normed[0]) == pytest.approx(1.0, abs=1e-6)
    assert not normed[1].any()
    # weighting 10 * 1 and 20 * sqrt(0.5)
    expected = np.array([10.0, 20 * math.sqrt(0.5)])
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(normed[0, [10, 20]], expected, atol=1e-6)


# --------------------------------------------------------------------------- top-k peak recall


def test_top_k_peak_recall_two_of_three():
    true = stack({50: 1.0, 60: 0.8, 70: 0.6, 80: 0.1})
    predicted = stack({50: 1.0, 60: 0.9, 99: 0.7, 70: 0.2})  # top-3 {50, 60, 99}
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 3), [2 / 3])
    # with k = 4 every true peak is among the predicted top 4
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 4), [3 / 4])


def test_top_k_peak_recall_fewer_true_peaks_than_k():
    true = stack({50: 1.0, 60: 0.5}, {50: 1.0, 60: 0.5})
    predicted = stack({60: 1.0, 99: 0.5, 98: 0.4}, {50: 1.0, 60: 0.1, 98: 0.5, 97: 0.4})
    # row 0: true peaks {50, 60}, predicted top-3 {60, 98, 99} -> 1/2
    # row 1: predicted top-3 {50, 98, 97} -> 1/2 (60 is the 4th predicted peak)
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 3), [0.5, 0.5])
    # k = 4: row 0 never predicts m/z 50 -> still 1/2; row 1 now includes m/z 60 -> 1
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 4), [0.5, 1.0])


def test_top_k_peak_recall_zero_predicted_bins_do_not_count():
    # only one predicted peak: the zero bins picked to fill the top 3 must not match true peaks
    true = stack({50: 1.0, 60: 0.8, 70: 0.6})
    predicted = stack({50: 1.0})
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 3), [1 / 3])


def test_top_k_peak_recall_edge_cases():
    true = stack({}, {5: 1.0}, n_bins=10)
    predicted = stack({5: 1.0}, {5: 1.0}, n_bins=10)
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 3), [0.0, 1.0])  # empty true spectrum -> 0
    np.testing.assert_allclose(top_k_peak_recall(predicted, true, 50), [0.0, 1.0])  # k above the number of bins


# --------------------------------------------------------------------------- intensity errors, peak detection


def test_intensity_errors_hand_example():
    true = np.array([[0.0, 1.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]])
    predicted = np.array([[0.0, 0.5, 0.5, 0.5], [0.0, 1.0, 0.0, 0.0]])
    mae, rmse = intensity_errors(predicted, true)
    # row 0: differences (0, -0.5, 0, 0.5): MAE 1/4, RMSE sqrt(0.5 / 4)
    np.testing.assert_allclose(mae, [0.25, 0.0])
    np.testing.assert_allclose(rmse, [math.sqrt(0.125), 0.0])


def test_peak_detection_hand_example():
    true = np.array([[0.0, 1.0, 0.5, 0.005, 0.02, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    predicted = np.array([[0.0, 0.9, 0.0, 0.3, 0.011, 0.2, 0.009],
                          [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    detection, false_positive = peak_detection(predicted, true, threshold=0.01)
    # true peaks >= 0.01: m/z 1, 2, 4; predicted: m/z 1, 3, 4, 5 (0.009 is below); both: 1, 4
    np.testing.assert_allclose(detection, [2 / 3, 0.0])  # no true peaks -> 0
    np.testing.assert_allclose(false_positive, [2 / 4, 1.0])
    # a higher threshold drops m/z 4 (0.02 true, 0.011 predicted)
    detection, false_positive = peak_detection(predicted, true, threshold=0.1)
    np.testing.assert_allclose(detection, [1 / 2, 0.0])
    np.testing.assert_allclose(false_positive, [2 / 3, 1.0])


def test_peak_detection_no_predicted_peaks():
    detection, false_positive = peak_detection(np.zeros((1, 5)), np.array([[0, 1.0, 0, 0, 0]]))
    np.testing.assert_allclose(detection, [0.0])
    np.testing.assert_allclose(false_positive, [0.0])


# --------------------------------------------------------------------------- library ranks, recall@k


def test_library_ranks_identical_query_is_rank_one():
    rng = np.random.default_rng(1)
    library = random_spectra(rng, 8)
    keys = [f"K{i}" for i in range(8)]
    queries = library[[3, 5]].copy()
    ranks = library_ranks(queries, ["K3", "K5"], library, keys)  # default NEIMS weighting
    np.testing.assert_array_equal(ranks, [1, 1])


def test_library_ranks_two_better_entries_give_rank_three():
    query = stack({5: 1.0, 6: 1.0}, n_bins=11)
    library = stack(
        {5: 1.0, 6: 0.2},  # correct: cos = 1.2 / (sqrt(2) sqrt(1.04)) = 0.832
        {5: 1.0, 6: 1.0},  # identical: cos = 1
        {5: 1.0, 6: 0.9},  # cos = 1.9 / (sqrt(2) sqrt(1.81)) = 0.9986
        {5: 1.0},  # cos = 0.707
        {7: 1.0},  # cos = 0
        n_bins=11,
    )
    keys = ["A", "B", "C", "D", "E"]
    assert library_ranks(query, ["A"], library, keys, 0.0, 1.0).tolist() == [3]
    assert library_ranks(query, ["B"], library, keys, 0.0, 1.0).tolist() == [1]
    assert library_ranks(query, ["D"], library, keys, 0.0, 1.0).tolist() == [4]
    assert library_ranks(query, ["E"], library, keys, 0.0, 1.0).tolist() == [5]


def test_library_ranks_ties_count_against_correct_entry():
    query = stack({5: 1.0, 6: 0.5}, n_bins=11)
    library = stack({5: 1.0, 6: 0.5}, {5: 1.0, 6: 0.5}, {5: 1.0, 6: 0.5}, {8: 1.0}, n_bins=11)
    # the correct entry "A" scores 1, and so do the two other (identical) entries "B" and "C"
    assert library_ranks(query, ["A"], library, ["A", "B", "C", "D"], 0.0, 1.0).tolist() == [3]


def test_library_ranks_best_of_several_correct_entries_and_missing_key():
    query = stack({5: 1.0, 6: 1.0}, {5: 1.0, 6: 1.0}, n_bins=11)
    library = stack({7: 1.0}, {5: 1.0, 6: 0.9}, {5: 1.0, 6: 1.0}, n_bins=11)
    keys = ["A", "B", "A"]
    # correct entries rows 0 (cos 0) and 2 (cos 1): best one counts -> rank 1; key not in library -> 0
    assert library_ranks(query, ["A", "Z"], library, keys, 0.0, 1.0).tolist() == [1, 0]


def test_library_ranks_independent_of_block_size():
    rng = np.random.default_rng(7)
    library = random_spectra(rng, 20)
    keys = [f"K{i}" for i in range(20)]
    queries = random_spectra(rng, 9)
    query_keys = [f"K{i}" for i in range(9)]
    full = library_ranks(queries, query_keys, library, keys)
    blocked = library_ranks(queries, query_keys, library, keys, block_size=2)
    np.testing.assert_array_equal(full, blocked)
    assert np.all((full >= 1) & (full <= 20))


def test_recall_at_k_excludes_rank_zero():
    ranks = np.array([1, 2, 0, 5, 12, 25, 0])
    recall = recall_at_k(ranks)
    # valid ranks 1, 2, 5, 12, 25
    assert recall == pytest.approx({"recall@1": 1 / 5, "recall@5": 3 / 5, "recall@10": 3 / 5, "recall@20": 4 / 5})
    assert recall_at_k(np.array([3, 1]), ks=(2, 3)) == {"recall@2": 0.5, "recall@3": 1.0}
    nan = recall_at_k(np.array([0, 0]), ks=(1,))
    assert list(nan) == ["recall@1"] and math.isnan(nan["recall@1"])


# --------------------------------------------------------------------------- summaries


def test_summarize():
    stats = summarize(np.array([1.0, 2.0, 3.0, 10.0]))
    assert stats == pytest.approx({"mean": 4.0, "median": 2.5, "std": math.sqrt(12.5)})  # population std
    empty = summarize(np.array([]))
    assert all(math.isnan(v) for v in empty.values()) and set(empty) == {"mean", "median", "std"}


def test_spectrum_metrics_keys_and_perfect_prediction():
    rng = np.random.default_rng(3)
    true = random_spectra(rng, 4)
    metrics = spectrum_metrics(true.copy(), true)
    assert set(metrics) == {"cosine_sqrt", "cosine_neims", "cosine_stein", "top5_peak_recall", "top10_peak_recall",
                            "top20_peak_recall", "mae", "rmse", "peak_detection_rate", "false_positive_rate"}
    for name in ("cosine_sqrt", "cosine_neims", "cosine_stein", "top5_peak_recall", "top20_peak_recall",
                 "peak_detection_rate"):
        np.testing.assert_allclose(metrics[name], 1.0, atol=1e-6)
    for name in ("mae", "rmse", "false_positive_rate"):
        np.testing.assert_allclose(metrics[name], 0.0)


def test_isotope_ratio_agreement_compares_the_molecular_ion_clusters():
    true = np.zeros((3, 201))
    true[:, 77] = 1.0
    true[0, 112], true[0, 114] = 0.8, 0.8 * 0.32  # chlorobenzene: M+2/M = 0.32
    true[1, 186], true[1, 188] = 0.5, 0.5 * 1.95  # dibromoethane
    true[2, 150] = 0.01  # molecular ion too weak to judge
    predicted = true.copy()
    predicted[1, 188] = 0.5 * 0.975  # half the measured ratio
    result = isotope_ratio_agreement(predicted, true, np.array([112, 186, 150]), smoothing=0.0)
    assert result["n_spectra"] == 2 and result["share_within_20_percent"] == 0.5
    assert result["median_abs_log_ratio_error"] == pytest.approx(np.log(2) / 2)
    assert isotope_ratio_agreement(predicted[2:], true[2:], np.array([150]))["n_spectra"] == 0
