"""Evaluation metrics on unit-resolution spectrum vectors (rows = spectra, columns = nominal m/z, base peak 1).

All functions are vectorised over rows and return one value per spectrum unless said otherwise.
"""

from __future__ import annotations

import numpy as np

from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER, weighted_unit_vectors

#: Cosine weightings reported by the evaluation: (mz_power, intensity_power).
COSINE_WEIGHTINGS = {
    "sqrt": (0.0, 0.5),  # cosine of sqrt intensities
    "neims": (NEIMS_MZ_POWER, NEIMS_INTENSITY_POWER),  # NEIMS library matching: m/z^1 * I^0.5
    "stein": (3.0, 0.6),  # Stein & Scott (1994): m/z^3 * I^0.6
}


def paired_cosine(predicted: np.ndarray, true: np.ndarray, mz_power: float = 0.0,
                  intensity_power: float = 1.0) -> np.ndarray:
    """Cosine between row i of ``predicted`` and row i of ``true`` (matchms CosineGreedy on unit-resolution data)."""
    a = weighted_unit_vectors(predicted, mz_power, intensity_power)
    b = weighted_unit_vectors(true, mz_power, intensity_power)
    return np.sum(a * b, axis=-1)


def top_k_peak_recall(predicted: np.ndarray, true: np.ndarray, k: int) -> np.ndarray:
    """Fraction of the ``k`` most intense true peaks found among the ``k`` most intense predicted peaks.

    Spectra with fewer than ``k`` true peaks are scored on the peaks they have.
    """
    n_bins = true.shape[1]
    k = min(k, n_bins)
    true_top = np.argpartition(-true, k - 1, axis=1)[:, :k]
    pred_top = np.argpartition(-predicted, k - 1, axis=1)[:, :k]
    true_valid = np.take_along_axis(true, true_top, axis=1) > 0
    pred_valid = np.take_along_axis(predicted, pred_top, axis=1) > 0
    pred_mask = np.zeros_like(true, dtype=bool)
    rows = np.repeat(np.arange(true.shape[0]), k)
    pred_mask[rows, pred_top.ravel()] = pred_valid.ravel()
    found = np.take_along_axis(pred_mask, true_top, axis=1) & true_valid
    n_true = true_valid.sum(axis=1)
    return np.divide(found.sum(axis=1), n_true, out=np.zeros(true.shape[0]), where=n_true > 0)


def intensity_errors(predicted: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute error and root mean squared error over all m/z bins (relative intensities, base peak 1)."""
    difference = predicted - true
    return np.abs(difference).mean(axis=1), np.sqrt(np.square(difference).mean(axis=1))


def peak_detection(predicted: np.ndarray, true: np.ndarray, threshold: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Peak detection rate and false positive rate at ``threshold`` (fraction of the base peak).

    Returns
    -------
    detection_rate
        Of the true peaks above the threshold, the fraction also predicted above it.
    false_positive_rate
        Of the predicted peaks above the threshold, the fraction with no true peak above it.
    """
    true_peaks = true >= threshold
    predicted_peaks = predicted >= threshold
    both = (true_peaks & predicted_peaks).sum(axis=1)
    n_true, n_predicted = true_peaks.sum(axis=1), predicted_peaks.sum(axis=1)
    detection = np.divide(both, n_true, out=np.zeros(len(true)), where=n_true > 0)
    false_positive = np.divide(n_predicted - both, n_predicted, out=np.zeros(len(true)), where=n_predicted > 0)
    return detection, false_positive


def library_ranks(queries: np.ndarray, query_keys: list[str], library: np.ndarray, library_keys: list[str],
                  mz_power: float = NEIMS_MZ_POWER, intensity_power: float = NEIMS_INTENSITY_POWER,
                  block_size: int = 512,
                  query_masses: np.ndarray | None = None, library_masses: np.ndarray | None = None,
                  mass_window: float | None = None) -> np.ndarray:
    """Rank of the correct molecule for each query in a library search (1 = top hit).

    The score is the weighted cosine; the correct entries are the library rows whose key equals the
    query's key. Ties are counted against the correct entry (pessimistic). Queries with no correct
    entry in the library get rank 0. With ``mass_window`` (and the nominal masses of queries and library
    entries), a query competes only with entries whose mass is within the window of its own (the NEIMS
    mass filter, +-5 Da there).
    """
    if mass_window is not None and (query_masses is None or library_masses is None):
        raise ValueError("a mass window needs the masses of the queries and of the library entries")
    library_normed = weighted_unit_vectors(library, mz_power, intensity_power)
    key_index: dict[str, list[int]] = {}
    for index, key in enumerate(library_keys):
        key_index.setdefault(key, []).append(index)
    ranks = np.zeros(len(queries), dtype=np.int64)
    for start in range(0, len(queries), block_size):
        block = weighted_unit_vectors(queries[start : start + block_size], mz_power, intensity_power)
        scores = block @ library_normed.T
        for row, scores_row in enumerate(scores):
            correct = key_index.get(query_keys[start + row])
            if not correct:
                continue
            best = scores_row[correct].max()
            others = np.ones(len(scores_row), dtype=bool)
            if mass_window is not None:
                others = np.abs(library_masses - query_masses[start + row]) <= mass_window
            others[correct] = False
            ranks[start + row] = 1 + int(np.count_nonzero(scores_row[others] >= best))
    return ranks


def recall_at_k(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
    """Fraction of queries whose correct molecule is within the top k (queries with rank 0 excluded)."""
    valid = ranks[ranks > 0]
    if valid.size == 0:
        return {f"recall@{k}": float("nan") for k in ks}
    return {f"recall@{k}": float(np.mean(valid <= k)) for k in ks}


def isotope_ratio_agreement(predicted: np.ndarray, true: np.ndarray, masses: np.ndarray,
                            min_relative: float = 0.05, smoothing: float = 1e-3) -> dict[str, float]:
    """How well predicted molecular-ion isotope clusters agree with the measured ones: (M+2)/M ratios.

    Only spectra whose molecular ion M carries at least ``min_relative`` of the base peak in both the
    prediction and the measurement count (elsewhere the ratio says nothing). The error of a spectrum is
    ``|log((p[M+2] + s) / (p[M] + s)) - log((t[M+2] + s) / (t[M] + s))|`` with ``s = smoothing``, intensities
    relative to each spectrum's base peak.

    Returns
    -------
    dict
        ``n_spectra``, ``median_abs_log_ratio_error`` and ``share_within_20_percent`` (NaN when none counts).
    """
    masses = np.asarray(masses, dtype=np.int64)
    inside = masses + 2 < true.shape[1]
    p = predicted[inside] / np.maximum(predicted[inside].max(axis=1, keepdims=True), 1e-12)
    t = true[inside] / np.maximum(true[inside].max(axis=1, keepdims=True), 1e-12)
    rows, masses = np.arange(len(p)), masses[inside]
    usable = (p[rows, masses] >= min_relative) & (t[rows, masses] >= min_relative)
    rows, masses = rows[usable], masses[usable]
    if rows.size == 0:
        return {"n_spectra": 0, "median_abs_log_ratio_error": float("nan"), "share_within_20_percent": float("nan")}
    error = np.abs(np.log((p[rows, masses + 2] + smoothing) / (p[rows, masses] + smoothing))
                   - np.log((t[rows, masses + 2] + smoothing) / (t[rows, masses] + smoothing)))
    return {"n_spectra": int(rows.size), "median_abs_log_ratio_error": float(np.median(error)),
            "share_within_20_percent": float(np.mean(error < np.log(1.2)))}


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, median and standard deviation of a metric."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "std": float("nan")}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "std": float(values.std())}


def spectrum_metrics(predicted: np.ndarray, true: np.ndarray, peak_threshold: float = 0.01,
                     top_ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, np.ndarray]:
    """All per-spectrum metrics at once: name -> array with one value per spectrum."""
    metrics = {f"cosine_{name}": paired_cosine(predicted, true, *powers) for name, powers in COSINE_WEIGHTINGS.items()}
    for k in top_ks:
        metrics[f"top{k}_peak_recall"] = top_k_peak_recall(predicted, true, k)
    metrics["mae"], metrics["rmse"] = intensity_errors(predicted, true)
    metrics["peak_detection_rate"], metrics["false_positive_rate"] = peak_detection(predicted, true, peak_threshold)
    return metrics


def uncertainty_score(sqrt_mean: np.ndarray, sqrt_std: np.ndarray) -> np.ndarray:
    """Relative MC-dropout spread of each predicted spectrum: ``||std|| / ||mean||`` in sqrt-intensity space.

    0 means every dropout sample gave the same spectrum; the larger the score, the more the samples
    disagree. Per spectrum it rises with the prediction error (see :func:`uncertainty_calibration`).
    """
    norm = np.linalg.norm(sqrt_mean, axis=-1)
    return np.divide(np.linalg.norm(sqrt_std, axis=-1), norm, out=np.zeros_like(norm), where=norm > 0)


def uncertainty_calibration(sqrt_mean: np.ndarray, sqrt_std: np.ndarray, true: np.ndarray,
                            nominal_masses: np.ndarray, isotope_margin: int = 5, n_groups: int = 10) -> dict:
    """How well MC-dropout standard deviations track the actual errors.

    Per bin (only bins a molecule can produce, m/z <= M + ``isotope_margin``), the predicted std is
    compared with the absolute error ``|mean - sqrt(true)|`` in sqrt-intensity space; per spectrum,
    the relative spread (:func:`uncertainty_score`) is compared with ``1 - cosine`` of the sqrt spectra.

    Returns
    -------
    dict
        ``bin_pearson``, ``bin_spearman`` (std vs absolute error over all bins), ``spectrum_spearman``
        (spread vs 1 - cosine), and ``by_std_decile``: mean std and mean absolute error per decile of std.
    """
    from scipy.stats import pearsonr, spearmanr

    n_bins = true.shape[1]
    allowed = np.arange(n_bins)[None, :] <= (np.asarray(nominal_masses)[:, None] + isotope_margin)
    error = np.abs(sqrt_mean - np.sqrt(np.clip(true, 0, None)))
    std_values, error_values = sqrt_std[allowed], error[allowed]
    order = np.argsort(std_values, kind="stable")
    groups = []
    for index, chunk in enumerate(np.array_split(order, n_groups)):
        if chunk.size:
            groups.append({"decile": index + 1, "n_bins": int(chunk.size),
                           "mean_std": float(std_values[chunk].mean()),
                           "mean_abs_error": float(error_values[chunk].mean())})
    spread = uncertainty_score(sqrt_mean, sqrt_std)
    cosine_error = 1 - paired_cosine(np.square(np.clip(sqrt_mean, 0, None)), true, 0.0, 0.5)
    enough = len(true) > 2
    return {
        "n_spectra": int(len(true)),
        "n_bins": int(std_values.size),
        "bin_pearson": float(pearsonr(std_values, error_values)[0]) if std_values.size > 2 else float("nan"),
        "bin_spearman": float(spearmanr(std_values, error_values)[0]) if std_values.size > 2 else float("nan"),
        "spectrum_spearman": float(spearmanr(spread, cosine_error)[0]) if enough else float("nan"),
        "by_std_decile": groups,
    }
