"""Unit-resolution spectra as a weighted, L2-normalised matrix: what a library search scores, and what a library
index stores.

Every spectrum is binned to integer m/z ``0..max_mz`` (:func:`matchms_neims.spectra.bin_peak_lists`: peaks rounded
to the nearest integer m/z with :func:`numpy.rint`, intensities in the same bin summed, peaks above ``max_mz`` or
with non-positive intensity dropped; the peaks dropped for lying above ``max_mz`` are counted in
:attr:`SpectralMatrix.above_max_mz`), weighted with ``mz**mz_power * intensity**intensity_power`` and
L2-normalised (:func:`matchms_neims.spectra.weighted_unit_vectors`), so that the cosine score of two spectra is the
dot product of their rows. :mod:`matchms_neims.search` scores such matrices; :mod:`matchms_neims.library_index`
stores them in a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from matchms import Spectrum

from matchms_neims.io import (
    SpectrumFileError,
    SpectrumRecord,
    as_record,
    count_records,
    detect_format,
    iter_records,
    one_line_text,
    spectrum_to_record,
)
from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER, bin_peak_lists, weighted_unit_vectors

#: Highest nominal m/z a search compares unless told otherwise (``--max-mz``); EI spectra rarely go above it.
SEARCH_MAX_MZ = 1000

_BUILD_BLOCK = 4096  # records binned together when building a SpectralMatrix


def tsv_text(value) -> str:
    """Metadata value as one line of TSV text (:func:`~matchms_neims.io.one_line_text`; ``""`` for missing values)."""
    if value is None or isinstance(value, float) and np.isnan(value):
        return ""
    return one_line_text(value)


def row_metadata(metadata: dict) -> dict:
    """The identifying metadata of one spectrum: name, inchikey, smiles and spectrum_id."""
    name = metadata.get("compound_name") or metadata.get("name") or metadata.get("title")
    spectrum_id = metadata.get("spectrum_id") or metadata.get("spectrumid") or metadata.get("id")
    return {
        "name": tsv_text(name),
        "inchikey": tsv_text(metadata.get("inchikey")),
        "smiles": tsv_text(metadata.get("smiles")),
        "spectrum_id": tsv_text(spectrum_id),
    }


def _rounded(value) -> float:
    return float(round(float(value)))


def _nominal_mass(metadata: dict) -> float:
    """Nominal molecular mass from ``nominal_mass`` (MSP ``MW``), else the rounded ``exact_mass`` or matchms's
    ``parent_mass``; NaN if none is known."""
    for key, convert in (("nominal_mass", float), ("exact_mass", _rounded), ("parent_mass", _rounded)):
        value = metadata.get(key)
        if value not in (None, ""):
            try:
                mass = convert(value)
            except (TypeError, ValueError):
                continue
            if np.isfinite(mass) and mass > 0:
                return mass
    return float("nan")


class SpectralMatrix:
    """Unit-resolution spectra as a dense, weighted and L2-normalised float32 matrix.

    Row ``i`` holds spectrum ``i`` binned to nominal m/z ``0..max_mz`` (see the module docstring),
    base peak scaled to 1, weighted with ``mz**mz_power * intensity**intensity_power`` and divided by its
    L2 norm, so that the cosine score of two spectra is the dot product of their rows. Spectra without
    peaks (or whose weights are all zero, e.g. a single peak at m/z 0 with ``mz_power > 0``) get a zero row
    and score 0 against everything. Peaks above ``max_mz`` are dropped (and counted in ``above_max_mz``).
    The matrix takes about ``5 * n * (max_mz + 1)`` bytes (float32 vectors plus the bool peak matrix).

    Use :meth:`from_file`, :meth:`from_spectra` or :meth:`from_records` to build one.

    Attributes
    ----------
    vectors
        ``(n, max_mz + 1)`` float32 array of weighted, L2-normalised spectra.
    peaks
        ``(n, max_mz + 1)`` bool array, True where a spectrum has a peak (used to count matched peaks;
        unlike ``vectors`` it also marks peaks whose weight is 0, such as m/z 0 when ``mz_power > 0``).
    metadata
        One dict per row with the keys ``name``, ``inchikey``, ``smiles`` and ``spectrum_id`` (strings).
    masses
        Nominal molecular mass of each row (float64, NaN where unknown), from the ``nominal_mass`` metadata
        (MSP ``MW``) or the rounded ``exact_mass`` or ``parent_mass``; used by the mass-window prefilter of
        :func:`~matchms_neims.search.search_library`.
    max_mz, mz_power, intensity_power
        The settings the matrix was built with.
    above_max_mz
        Peaks of each row (int32) that were not binned because their nominal m/z is above ``max_mz``
        (peaks with a positive intensity only; zeros where not known).
    """

    def __init__(
        self,
        vectors: np.ndarray,
        peaks: np.ndarray,
        metadata: list[dict],
        max_mz: int = SEARCH_MAX_MZ,
        mz_power: float = NEIMS_MZ_POWER,
        intensity_power: float = NEIMS_INTENSITY_POWER,
        masses: np.ndarray | None = None,
        above_max_mz: np.ndarray | None = None,
        occupied_columns: slice | None = None,
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        peaks = np.asarray(peaks, dtype=bool)
        if vectors.ndim != 2 or vectors.shape[1] != max_mz + 1:
            raise ValueError(f"vectors must have shape (n, {max_mz + 1}), got {vectors.shape}")
        if peaks.shape != vectors.shape:
            raise ValueError(f"peaks shape {peaks.shape} differs from vectors shape {vectors.shape}")
        if len(metadata) != vectors.shape[0]:
            raise ValueError(f"{len(metadata)} metadata entries for {vectors.shape[0]} spectra")
        self.vectors = vectors
        self.peaks = peaks
        # a list is copied; another sequence (an index's rows, decoded on demand) is kept as it is
        self.metadata = metadata if isinstance(metadata, Sequence) and not isinstance(metadata, list) else list(
            metadata)
        self.masses = np.full(len(self.metadata), np.nan) if masses is None else np.asarray(masses, dtype=np.float64)
        if self.masses.shape != (len(self.metadata),):
            raise ValueError(f"{self.masses.shape[0]} masses for {len(self.metadata)} spectra")
        self.max_mz = int(max_mz)
        self.mz_power = float(mz_power)
        self.intensity_power = float(intensity_power)
        n = len(self.metadata)
        self.above_max_mz = np.zeros(n, np.int32) if above_max_mz is None else np.asarray(above_max_mz, np.int32)
        if self.above_max_mz.shape != (n,):
            raise ValueError(f"{self.above_max_mz.shape[0]} above_max_mz counts for {n} spectra")
        self._occupied = occupied_columns

    def occupied_columns(self) -> slice:
        """The columns ``lo:hi`` outside which every vector is zero; the matrix product skips the others (a
        predicted library up to m/z 500 halves the work at ``max_mz`` 1000). Computed once, unless given."""
        if self._occupied is None:
            used = np.flatnonzero(self.vectors.any(axis=0))
            self._occupied = slice(int(used[0]), int(used[-1]) + 1) if used.size else slice(0, 0)
        return self._occupied

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def __repr__(self) -> str:
        return (
            f"SpectralMatrix(n={len(self)}, max_mz={self.max_mz}, mz_power={self.mz_power}, "
            f"intensity_power={self.intensity_power})"
        )

    @property
    def settings(self) -> tuple[int, float, float]:
        """``(max_mz, mz_power, intensity_power)``."""
        return self.max_mz, self.mz_power, self.intensity_power

    @classmethod
    def from_records(
        cls,
        records: Iterable[SpectrumRecord | Spectrum],
        max_mz: int = SEARCH_MAX_MZ,
        mz_power: float = NEIMS_MZ_POWER,
        intensity_power: float = NEIMS_INTENSITY_POWER,
    ) -> SpectralMatrix:
        """Build the matrix from :class:`~matchms_neims.io.SpectrumRecord` objects (streamed, binned in blocks).

        Parameters
        ----------
        records
            Records (or matchms spectra); any iterable, consumed once.
        max_mz
            Highest nominal m/z kept; peaks above it are dropped and counted in :attr:`above_max_mz`.
        mz_power, intensity_power
            Peak weighting ``mz**mz_power * intensity**intensity_power`` (matchms CosineGreedy convention).

        Returns
        -------
        SpectralMatrix
        """
        if max_mz < 0:
            raise ValueError(f"max_mz must be >= 0, got {max_mz}")
        vector_blocks: list[np.ndarray] = []
        peak_blocks: list[np.ndarray] = []
        metadata: list[dict] = []
        masses: list[float] = []
        above_blocks: list[np.ndarray] = []
        block: list[SpectrumRecord] = []

        def flush() -> None:
            above_blocks.append(np.zeros(len(block), dtype=np.int32))
            vectors, peaks = _bin_block(block, max_mz, mz_power, intensity_power, above_blocks[-1])
            vector_blocks.append(vectors)
            peak_blocks.append(peaks)
            block.clear()

        for item in records:
            record = as_record(item)
            metadata.append(row_metadata(record.metadata))
            masses.append(_nominal_mass(record.metadata))
            block.append(record)
            if len(block) >= _BUILD_BLOCK:
                flush()
        if block or not vector_blocks:
            flush()
        vectors = vector_blocks[0] if len(vector_blocks) == 1 else np.concatenate(vector_blocks)
        vector_blocks.clear()
        peaks = peak_blocks[0] if len(peak_blocks) == 1 else np.concatenate(peak_blocks)
        return cls(vectors, peaks, metadata, max_mz, mz_power, intensity_power, np.array(masses, dtype=np.float64),
                   np.concatenate(above_blocks))

    @classmethod
    def from_spectra(
        cls,
        spectra: Iterable[Spectrum],
        max_mz: int = SEARCH_MAX_MZ,
        mz_power: float = NEIMS_MZ_POWER,
        intensity_power: float = NEIMS_INTENSITY_POWER,
    ) -> SpectralMatrix:
        """Build the matrix from :class:`matchms.Spectrum` objects (see :meth:`from_records`)."""
        return cls.from_records((spectrum_to_record(s) for s in spectra), max_mz, mz_power, intensity_power)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        max_mz: int = SEARCH_MAX_MZ,
        mz_power: float = NEIMS_MZ_POWER,
        intensity_power: float = NEIMS_INTENSITY_POWER,
    ) -> SpectralMatrix:
        """Build the matrix from an MSP or MGF file, streaming its records (see :meth:`from_records`)."""
        return cls.from_records(iter_records(path), max_mz, mz_power, intensity_power)


def _bin_block(
    records: Sequence[SpectrumRecord], max_mz: int, mz_power: float, intensity_power: float,
    above_max_mz: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bin (:func:`~matchms_neims.spectra.bin_peak_lists`), weight and L2-normalise
    (:func:`~matchms_neims.spectra.weighted_unit_vectors`) a block of records at once.

    Returns the float32 weighted vectors and the bool peak matrix, both ``(len(records), max_mz + 1)``.
    ``above_max_mz``, an int array of ``len(records)`` zeros, receives each record's number of peaks (finite,
    positive intensity) left out because their nominal m/z is above ``max_mz``.
    """
    width = max_mz + 1
    if not records:
        return np.zeros((0, width), dtype=np.float32), np.zeros((0, width), dtype=bool)
    dense, above = bin_peak_lists([r.mz for r in records], [r.intensities for r in records], max_mz)
    if above_max_mz is not None:
        above_max_mz += above.astype(above_max_mz.dtype)
    return weighted_unit_vectors(dense, mz_power, intensity_power), dense > 0


# --------------------------------------------------------------------------------------------- inputs

SpectraInput = str | os.PathLike | SpectralMatrix | Spectrum | SpectrumRecord | Iterable[Spectrum | SpectrumRecord]


def as_spectral_matrix(
    spectra: SpectraInput, max_mz: int, mz_power: float, intensity_power: float, role: str
) -> SpectralMatrix:
    """``spectra`` as one :class:`SpectralMatrix` with these settings: a matrix is checked and kept, a file or an
    iterable of spectra or records is read and binned. ``role`` names the input in the error of other settings."""
    if isinstance(spectra, SpectralMatrix):
        wanted = (int(max_mz), float(mz_power), float(intensity_power))
        if spectra.settings != wanted:
            raise ValueError(
                f"{role} SpectralMatrix was built with (max_mz, mz_power, intensity_power) = {spectra.settings} "
                f"but the search asks for {wanted}; rebuild it or pass matching settings"
            )
        return spectra
    if isinstance(spectra, str | os.PathLike):
        return SpectralMatrix.from_file(spectra, max_mz, mz_power, intensity_power)
    if isinstance(spectra, Spectrum | SpectrumRecord):
        spectra = [spectra]
    return SpectralMatrix.from_records(spectra, max_mz, mz_power, intensity_power)


def iter_spectra_blocks(spectra: SpectraInput, block_entries: int, max_mz: int, mz_power: float,
                        intensity_power: float) -> Iterator[SpectralMatrix]:
    """Spectra as consecutive :class:`SpectralMatrix` blocks of at most ``block_entries`` spectra.

    A file or an iterable is read once, block by block, so only one block is in memory at a time; a
    :class:`SpectralMatrix` is yielded whole (its settings must be these). No spectra give one empty block.
    """
    if isinstance(spectra, SpectralMatrix):
        yield as_spectral_matrix(spectra, max_mz, mz_power, intensity_power, "library")
        return
    if isinstance(spectra, str | os.PathLike):
        spectra = iter_records(spectra)
    elif isinstance(spectra, Spectrum | SpectrumRecord):
        spectra = [spectra]
    block: list = []
    yielded = False
    for item in spectra:
        block.append(item)
        if len(block) >= block_entries:
            yield SpectralMatrix.from_records(block, max_mz, mz_power, intensity_power)
            yielded = True
            block = []
    if block or not yielded:
        yield SpectralMatrix.from_records(block, max_mz, mz_power, intensity_power)


def spectra_file_size(path: str | os.PathLike) -> int | None:
    """About how many spectra an MSP/MGF file (optionally .gz) holds, from one fast pass; ``None`` if unreadable."""
    try:
        return count_records(path, detect_format(path))
    except (OSError, EOFError, SpectrumFileError):  # an unknown or damaged file: the reader reports it; no total
        return None
