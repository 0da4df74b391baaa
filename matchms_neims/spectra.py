"""Unit-resolution spectra: the one spectral kernel of the package.

Inside this package a spectrum is a float vector of length ``max_mz + 1`` whose index is the nominal m/z and whose
base peak is 1.0; files use base peak 999. This module bins peak lists to such vectors (:func:`bin_peak_lists`),
weights and L2-normalises them for the cosine (:func:`weighted_unit_vectors`: the dot product of two rows is the
score) and converts between vectors and matchms spectra. The search (:mod:`matchms_neims.spectral_matrix`), the
metrics, the evaluation and training validation all score through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matchms import Spectrum

from matchms_neims.utils import quiet_matchms

#: Highest nominal m/z of a spectrum vector unless told otherwise: the models predict m/z 0..500.
VECTOR_MAX_MZ = 500
#: The NEIMS library-matching weighting ``mz**1 * intensity**0.5`` (Wei et al. 2019): the search's default.
NEIMS_MZ_POWER = 1.0
NEIMS_INTENSITY_POWER = 0.5


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


def bin_spectrum(mz: np.ndarray, intensities: np.ndarray, max_mz: int = VECTOR_MAX_MZ) -> np.ndarray:
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


def spectrum_to_vector(spectrum: Spectrum, max_mz: int = VECTOR_MAX_MZ) -> np.ndarray:
    """Bin a :class:`matchms.Spectrum` to a unit-resolution vector (see :func:`bin_spectrum`)."""
    return bin_spectrum(spectrum.peaks.mz, spectrum.peaks.intensities, max_mz)


def weighted_unit_vectors(vectors: np.ndarray, mz_power: float = 0.0, intensity_power: float = 1.0) -> np.ndarray:
    """Weight spectrum vectors as matchms's cosine does and scale each to unit L2 norm: the cosine kernel.

    Each positive bin becomes ``mz**mz_power * intensity**intensity_power`` (bins of zero, negative or NaN
    intensity weigh 0; m/z is the index on the last axis), then each vector is divided by its L2 norm, so the dot
    product of two results is their cosine score (``CosineGreedy(tolerance=0.5)`` on unit-resolution spectra).
    Vectors without weight (no peaks, or only m/z 0 with ``mz_power > 0``) stay zero. Computed in float64.

    Parameters
    ----------
    vectors
        One vector or a stack of them (last axis = nominal m/z).
    mz_power, intensity_power
        The weighting; :data:`NEIMS_MZ_POWER` and :data:`NEIMS_INTENSITY_POWER` for NEIMS library matching.

    Returns
    -------
    numpy.ndarray
        float32 array of the shape of ``vectors``.
    """
    vectors = np.asarray(vectors)
    shape = vectors.shape
    dense = np.array(vectors, dtype=np.float64).reshape(-1, shape[-1] if shape else 1)
    with np.errstate(invalid="ignore"):
        occupied_rows, occupied_cols = np.nonzero(dense > 0)
    values = dense[occupied_rows, occupied_cols]
    if intensity_power != 1.0:
        values = np.power(values, intensity_power)
    values = values * np.power(np.arange(dense.shape[1], dtype=np.float64), float(mz_power))[occupied_cols]
    dense[:] = 0.0  # weight only the occupied bins (0**0 would be 1 otherwise)
    dense[occupied_rows, occupied_cols] = values
    norms = np.sqrt(np.einsum("ij,ij->i", dense, dense))
    dense /= np.where(norms > 0, norms, 1.0)[:, None]
    return dense.astype(np.float32).reshape(shape)
