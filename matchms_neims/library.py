"""Build in-silico EI libraries: molecules in (SMILES, CSV, SDF, MSP/MGF), predicted spectra out (MSP/MGF).

Molecules are read by :func:`matchms_neims.io.read_molecules` (re-exported here), one
:class:`~matchms_neims.io.MoleculeInput` at a time, each labelled with where it came from, so that a molecule
that cannot be predicted is reported by name.

:func:`build_library` predicts spectra chunk by chunk and writes them straight to the output file,
so memory stays flat however many molecules go in. Molecules that cannot be predicted are skipped,
counted and listed, never fatal. The library is written atomically: an error or an interrupt leaves
any previous file at the output path untouched and no partial file behind.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from matchms_neims.chemistry import molecule_problem
from matchms_neims.io import (
    MoleculeFileError,
    MoleculeInput,
    as_molecule_input,
    detect_format,
    estimated_molecule_count,
    format_record,
    molecule_format,
    read_molecules,
)
from matchms_neims.predictor import NeimsPredictor
from matchms_neims.problems import MOLECULE_COLUMNS, RecordProblem, write_problems
from matchms_neims.spectra import vector_to_peaks
from matchms_neims.utils import atomic_output

logger = logging.getLogger(__name__)

#: Intensity of the base peak in written libraries (library convention).
INTENSITY_SCALE = 999


# ============================================================================================ writing


@dataclass
class LibrarySummary:
    """What :func:`build_library` did.

    Attributes
    ----------
    n_input
        Molecules read.
    n_written
        Spectra written to the library.
    n_failed
        Molecules skipped (``n_input - n_written``).
    output
        The library file.
    errors_path
        The TSV listing the skipped molecules, if one was asked for.
    elapsed
        Wall-clock seconds.
    errors
        The :class:`~matchms_neims.problems.RecordProblem` (record, SMILES, reason) of every skipped molecule,
        chunk by chunk in input order.
    file_format
        ``"msp"`` or ``"mgf"``.
    """

    n_input: int
    n_written: int
    n_failed: int
    output: Path
    errors_path: Path | None = None
    elapsed: float = 0.0
    errors: list[RecordProblem] = field(default_factory=list)
    file_format: str = "msp"

    def __str__(self) -> str:
        rate = self.n_input / self.elapsed if self.elapsed > 0 else 0.0
        text = (f"Predicted {self.n_written:,} of {self.n_input:,} molecules in {self.elapsed:.1f} s "
                f"({rate:,.0f} mol/s); library written to {self.output} ({self.file_format.upper()}).")
        if self.n_failed:
            shown = "; ".join(str(problem) for problem in self.errors[:3])
            text += f" Skipped {self.n_failed:,} molecule{'s' if self.n_failed != 1 else ''}: {shown}"
            if self.n_failed > 3:
                text += f"; and {self.n_failed - 3:,} more"
            text += "."
        else:
            text += " No molecule was skipped."
        if self.errors_path is not None:
            text += f" Skipped molecules are listed in {self.errors_path}."
        return text


def _library_peaks(vector: np.ndarray, min_relative_intensity: float) -> tuple[list[int], list[int]]:
    """Peaks of a predicted vector as library integers: base peak 999, peaks rounding to 0 dropped."""
    mz, relative = vector_to_peaks(vector, min_relative_intensity)
    scaled = np.rint(relative * INTENSITY_SCALE)
    keep = scaled >= 1
    return mz[keep].astype(np.int64).tolist(), scaled[keep].astype(np.int64).tolist()


def _as_inputs(molecules: Iterable) -> Iterator[MoleculeInput]:
    for position, item in enumerate(molecules):
        yield as_molecule_input(item, position)


def _chunks(items: Iterator[MoleculeInput], size: int) -> Iterator[list[MoleculeInput]]:
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def duplicate_reason(first_record: str, key: str, key_is_inchikey: bool) -> str:
    """The reason listed for a molecule skipped as a duplicate of ``first_record``."""
    return f"duplicate of {first_record} (same {'InChIKey' if key_is_inchikey else 'canonical SMILES'} {key})"


def build_library(
    molecules: str | os.PathLike | Iterable,
    output: str | os.PathLike,
    file_format: str | None = None,
    predictor: NeimsPredictor | None = None,
    batch_size: int = 512,
    chunk_size: int = 4096,
    errors_path: str | os.PathLike | None = None,
    min_relative_intensity: float = 0.001,
    progress: bool = True,
    skip_duplicates: bool = True,
    written: list | None = None,
) -> LibrarySummary:
    """Predict EI spectra for many molecules and write them as an MSP or MGF library.

    Molecules are read, predicted and written ``chunk_size`` at a time; nothing but the current
    chunk (and, with the predictor's featurisation workers, the next one, featurized meanwhile), the
    list of skipped molecules and the keys of the molecules written (``skip_duplicates``) is held in
    memory, so a million molecules need little more memory than a thousand. Molecules that cannot be
    predicted (unparsable SMILES, molecular ion above the model's m/z range, ...) are skipped and
    listed, never fatal.

    Parameters
    ----------
    molecules
        A molecule file (path; see :func:`read_molecules` for the formats), or an iterable of SMILES
        strings, ``(smiles, name)`` pairs, dicts with ``smiles``, matchms spectra or
        :class:`~matchms_neims.predictor.MoleculeInput` objects. A ``str`` is always taken as a path.
    output
        Library file to write. It is written atomically: until the whole library is written the
        data goes to a temporary file beside it, so an error or interrupt leaves any previous file
        untouched and no partial file behind.
    file_format
        ``"msp"`` or ``"mgf"``; taken from the extension of ``output`` when ``None``.
    predictor
        The predictor to use; ``None`` loads the bundled model.
    batch_size
        Molecules per model call.
    chunk_size
        Molecules read, predicted and written per chunk.
    errors_path
        When given, write the skipped molecules to this TSV (columns ``record``, ``smiles``,
        ``reason``), also atomically, also when none was skipped.
    min_relative_intensity
        Drop predicted peaks below this fraction of the base peak. Written intensities are scaled
        to a base peak of 999 and rounded to integers; peaks that round to 0 are dropped.
    progress
        Show a progress bar (tqdm) on stderr.
    skip_duplicates
        Write each molecule once: a later record with the InChIKey (or, without one, the canonical SMILES)
        of a molecule already written is skipped and listed as a duplicate of the first. The keys seen are
        kept in memory (about 150 bytes per molecule); ``False`` writes every record.
    written
        When given, ``(key, key_is_inchikey, record, smiles)`` of each written record is appended, in output
        order (sharded runs use it to find duplicates across shards).

    Returns
    -------
    LibrarySummary
        Counts, paths, time taken and the skipped molecules; ``str()`` of it is a readable summary.

    Notes
    -----
    Each spectrum carries the metadata of :meth:`NeimsPredictor.spectrum_metadata`: the name,
    canonical SMILES, InChIKey, formula, nominal and exact mass, ``predicted=true`` and the model's
    name and version. A molecule whose predicted spectrum has no peak left after rounding is skipped.
    """
    start = time.perf_counter()
    output = Path(output)
    file_format = (file_format or detect_format(output)).lower()
    if file_format not in ("msp", "mgf"):
        raise ValueError(f"file_format must be 'msp' or 'mgf', not {file_format!r}")
    if chunk_size < 1 or batch_size < 1:
        raise ValueError("chunk_size and batch_size must be at least 1")
    if isinstance(molecules, (str, os.PathLike)):
        inputs = read_molecules(molecules)
        total = estimated_molecule_count(molecules) if progress else None
    else:
        total = len(molecules) if hasattr(molecules, "__len__") else None
        inputs = _as_inputs(molecules)
    if predictor is None:
        predictor = NeimsPredictor()

    errors: list[RecordProblem] = []
    first_record_of: dict[str, str] = {}  # molecule key -> record written for it (skip_duplicates)
    n_input = n_written = 0
    bar = tqdm(total=total, unit="mol", desc="predicting", disable=not progress, dynamic_ncols=True)
    try:
        with atomic_output(output) as handle:
            chunks: deque[list[MoleculeInput]] = deque()  # read, waiting for their predictions

            def read_chunks() -> Iterator[list[MoleculeInput]]:
                for chunk in _chunks(inputs, chunk_size):
                    chunks.append(chunk)
                    yield chunk

            # predict_batches lets featurisation workers start on the next chunk while this one is written
            for batch in predictor.predict_batches(read_chunks(), batch_size=batch_size):
                chunk = chunks.popleft()
                n_input += len(chunk)
                errors.extend(batch.errors)
                parts = []
                for vector, molecule, info, uncertainty, expert_weights in zip(
                        batch.vectors, batch.molecules, batch.infos, batch.per_molecule(batch.uncertainty),
                        batch.per_molecule(batch.expert_weights)):
                    mz, intensities = _library_peaks(vector, min_relative_intensity)
                    if not mz:
                        errors.append(molecule_problem(
                            molecule.record, f"no predicted peak above {min_relative_intensity:g} of the base peak",
                            molecule.smiles))
                        continue
                    key = info.inchikey or info.smiles
                    if skip_duplicates:
                        if key in first_record_of:
                            errors.append(molecule_problem(molecule.record, duplicate_reason(
                                first_record_of[key], key, bool(info.inchikey)), molecule.smiles))
                            continue
                        first_record_of[key] = molecule.record
                    if written is not None:
                        written.append((key, bool(info.inchikey), molecule.record, molecule.smiles))
                    metadata = predictor.spectrum_metadata(molecule, info, uncertainty, expert_weights)
                    parts.append(format_record(file_format, metadata, mz, intensities))
                handle.write("".join(parts))
                n_written += len(parts)
                del batch, parts
                bar.update(len(chunk))
    finally:
        bar.close()

    if errors_path is not None:
        errors_path = write_problems(errors, errors_path, MOLECULE_COLUMNS)
    summary = LibrarySummary(n_input=n_input, n_written=n_written, n_failed=n_input - n_written, output=output,
                             errors_path=errors_path, elapsed=time.perf_counter() - start, errors=errors,
                             file_format=file_format)
    logger.debug("%s", summary)
    return summary


__all__ = ["LibrarySummary", "MoleculeFileError", "build_library", "molecule_format", "read_molecules"]
