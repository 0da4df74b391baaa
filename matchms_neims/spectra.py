"""Unit-resolution spectra: binning, normalisation and conversion between vectors and matchms spectra.

Inside this package a spectrum is a float vector of length ``max_mz + 1`` whose index is the
nominal m/z and whose base peak is 1.0. Files use base peak 999.
"""

from __future__ import annotations

import numpy as np
from matchms import Spectrum

from matchms_neims.utils import quiet_matchms

DEFAULT_MAX_MZ = 500


def normalize_base_peak(vectors: np.ndarray) -> np.ndarray:
    """Scale each spectrum vector (the last axis) so its base peak is 1; all-zero vectors stay zero."""
    peak = vectors.max(axis=-1, keepdims=True)
    return np.divide(vectors, peak, out=np.zeros_like(vectors), where=peak > 0)


def bin_spectrum(mz: np.ndarray, intensities: np.ndarray, max_mz: int = DEFAULT_MAX_MZ) -> np.ndarray:
    """Bin peaks to nominal m/z 0..max_mz and normalise the base peak to 1.

    Peaks are rounded to the nearest integer m/z; intensities of peaks falling in the same bin
    (high-resolution data) are summed. Peaks above ``max_mz`` are dropped.

    Returns
    -------
    numpy.ndarray
        float32 vector of length ``max_mz + 1``; all zeros when no peak is left.
    """
    vector = np.zeros(max_mz + 1, dtype=np.float64)
    mz = np.asarray(mz, dtype=np.float64)
    intensities = np.asarray(intensities, dtype=np.float64)
    bins = np.rint(mz).astype(np.int64)
    keep = (bins >= 0) & (bins <= max_mz) & (intensities > 0)
    kept = intensities[keep]
    # scaled to the largest peak before a bin's peaks are summed, as in search's binning: two peaks of 1e308
    # would overflow to inf, then NaN; the base-peak normalisation makes the scaling a no-op otherwise
    np.add.at(vector, bins[keep], kept / kept.max() if kept.size else kept)
    return normalize_base_peak(vector).astype(np.float32)


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
