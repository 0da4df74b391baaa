"""Unit-resolution spectra: binning, normalisation and conversion between vectors and matchms spectra.

Inside this package a spectrum is a float vector of length ``max_mz + 1`` whose index is the
nominal m/z and whose base peak is 1.0. Files use base peak 999.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matchms import Spectrum

from matchms_neims.utils import quiet_matchms

DEFAULT_MAX_MZ = 500


def normalize_base_peak(vectors: np.ndarray) -> np.ndarray:
    """Scale each spectrum vector (the last axis) so its base peak is 1; all-zero vectors stay zero."""
    peak = vectors.max(axis=-1, keepdims=True)
    return np.divide(vectors, peak, out=np.zeros_like(vectors), where=peak > 0)


def bin_peak_lists(mz_lists: Sequence[np.ndarray], intensity_lists: Sequence[np.ndarray], max_mz: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Bin many spectra at once to nominal m/z 0..max_mz, base peak 1: the one binning of the package.

    Peaks are rounded to the nearest integer m/z with :func:`numpy.rint`; intensities of one bin (high-resolution
    data) are summed. Peaks with a non-finite m/z or intensity, a non-positive intensity or an m/z outside
    ``0..max_mz`` are dropped. Each spectrum is scaled to its largest peak before a bin's peaks are summed: two
    peaks of 1e308 would overflow to inf, then NaN.

    Parameters
    ----------
    mz_lists, intensity_lists
        The peaks of each spectrum (equal lengths per spectrum).
    max_mz
        Highest nominal m/z kept.

    Returns
    -------
    vectors, above_max_mz
        ``(n, max_mz + 1)`` float64 vectors (all zeros for a spectrum without peaks left), and each spectrum's number
        of peaks (finite, positive intensity) left out because their nominal m/z is above ``max_mz``.
    """
    width = max_mz + 1
    n = len(mz_lists)
    lengths = np.fromiter((np.size(mz) for mz in mz_lists), dtype=np.int64, count=n)
    intensity_lengths = np.fromiter((np.size(values) for values in intensity_lists), dtype=np.int64,
                                    count=len(intensity_lists))
    if intensity_lengths.shape != lengths.shape:
        raise ValueError(f"{n} m/z lists but {len(intensity_lists)} intensity lists")
    if (intensity_lengths != lengths).any():
        first = int(np.flatnonzero(intensity_lengths != lengths)[0])
        raise ValueError(f"spectrum {first} has {lengths[first]} m/z values but {intensity_lengths[first]} intensities")
    if lengths.sum():
        mz = np.concatenate([np.asarray(values, dtype=np.float64).ravel() for values in mz_lists])
        intensities = np.concatenate([np.asarray(values, dtype=np.float64).ravel() for values in intensity_lists])
    else:
        mz = intensities = np.zeros(0)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(mz) & np.isfinite(intensities) & (intensities > 0)
        bins = np.rint(mz[keep])
        inside = (bins >= 0) & (bins <= max_mz)
    above_max_mz = np.bincount(rows[keep][bins > max_mz], minlength=n).astype(np.int64)
    kept_rows, kept = rows[keep][inside], intensities[keep][inside]
    largest = np.ones(n)
    if kept.size:  # rows are sorted: one reduceat over the runs of each row
        starts = np.concatenate([[0], np.flatnonzero(np.diff(kept_rows)) + 1])
        largest[kept_rows[starts]] = np.maximum.reduceat(kept, starts)
    flat = kept_rows * width + bins[inside].astype(np.int64)
    vectors = np.bincount(flat, weights=kept / largest[kept_rows], minlength=n * width)
    vectors = vectors.astype(np.float64, copy=False).reshape(n, width)  # bincount gives int64 when nothing is kept
    return normalize_base_peak(vectors), above_max_mz


def bin_spectrum(mz: np.ndarray, intensities: np.ndarray, max_mz: int = DEFAULT_MAX_MZ) -> np.ndarray:
    """Bin one spectrum's peaks to nominal m/z 0..max_mz, base peak 1 (:func:`bin_peak_lists`).

    Returns
    -------
    numpy.ndarray
        float32 vector of length ``max_mz + 1``; all zeros when no peak is left.
    """
    return bin_peak_lists([mz], [intensities], max_mz)[0][0].astype(np.float32)


def vector_to_peaks(vector: np.ndarray, min_relative_intensity: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero bins of a spectrum vector as ``(mz, intensities)`` arrays (float64), base peak 1.

    Parameters
    ----------
    vector
        Spectrum vector (index = nominal m/z).
    min_relative_intensity
        Drop peaks below this fraction of the base peak (0.001 keeps what a 999-scale file shows).
    """
    vector = np.asarray(vector, dtype=np.float64)
    peak = vector.max() if vector.size else 0.0
    if peak <= 0:
        return np.zeros(0), np.zeros(0)
    relative = vector / peak
    mz = np.flatnonzero(relative > max(min_relative_intensity, 0.0))
    return mz.astype(np.float64), relative[mz]


def vector_to_spectrum(vector: np.ndarray, metadata: dict | None = None,
                       min_relative_intensity: float = 0.0) -> Spectrum:
    """Make a :class:`matchms.Spectrum` from a spectrum vector."""
    mz, intensities = vector_to_peaks(vector, min_relative_intensity)
    with quiet_matchms():
        return Spectrum(mz=mz, intensities=intensities, metadata=dict(metadata or {}), metadata_harmonization=True)


def spectrum_to_vector(spectrum: Spectrum, max_mz: int = DEFAULT_MAX_MZ) -> np.ndarray:
    """Bin a :class:`matchms.Spectrum` to a unit-resolution vector (see :func:`bin_spectrum`)."""
    return bin_spectrum(spectrum.peaks.mz, spectrum.peaks.intensities, max_mz)


def weight_spectra(vectors: np.ndarray, mz_power: float = 0.0, intensity_power: float = 1.0) -> np.ndarray:
    """Apply the matchms cosine weighting ``mz**mz_power * intensity**intensity_power`` to spectrum vectors.

    Works on one vector or a stack of vectors (last axis = m/z).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    positive = np.clip(vectors, 0, None)
    weighted = np.power(positive, intensity_power, dtype=np.float32) if intensity_power != 1 else positive
    weighted = np.where(vectors > 0, weighted, 0).astype(np.float32)
    if mz_power:
        mz = np.arange(vectors.shape[-1], dtype=np.float32)
        weighted = weighted * np.power(mz, mz_power, dtype=np.float32)
    return weighted
