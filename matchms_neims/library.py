"""Build in-silico EI libraries: molecules in (SMILES, CSV, SDF, MSP/MGF), predicted spectra out (MSP/MGF).

:func:`read_molecules` streams molecules from a file, one :class:`~matchms_neims.predictor.MoleculeInput`
at a time, each labelled with where it came from (``line 12 (ethanol)``, ``row 5``, ``SDF record 3``,
``MSP record 7 (caffeine)``) so that a molecule that cannot be predicted is reported by name.

:func:`build_library` predicts spectra chunk by chunk and writes them straight to the output file,
so memory stays flat however many molecules go in. Molecules that cannot be predicted are skipped,
counted and listed, never fatal. The library is written atomically: an error or an interrupt leaves
any previous file at the output path untouched and no partial file behind.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from matchms_neims.chemistry import MAX_SMILES_LENGTH, shortened
from matchms_neims.io import (
    CUT_LINE_MARK,
    MAX_LINE_LENGTH,
    count_records,
    decoded_lines,
    detect_format,
    format_record,
    is_gzip,
    iter_records,
    open_text,
)
from matchms_neims.predictor import MoleculeInput, NeimsPredictor, as_molecule_input
from matchms_neims.spectra import vector_to_peaks
from matchms_neims.utils import atomic_output

logger = logging.getLogger(__name__)

#: Molecule file types understood by :func:`read_molecules` (a ``.gz`` suffix is allowed for the text ones and SDF).
MOLECULE_FORMATS = ("smi", "csv", "tsv", "sdf", "msp", "mgf")
_SUFFIX_FORMATS = {
    "smi": "smi", "smiles": "smi", "txt": "smi", "ism": "smi", "can": "smi",
    "csv": "csv", "tsv": "tsv", "tab": "tsv",
    "sdf": "sdf", "sd": "sdf",
    "msp": "msp", "mgf": "mgf",
}
#: Column names recognised as SMILES (compared case-insensitively, first match wins).
SMILES_COLUMNS = ("smiles", "canonical_smiles", "isomeric_smiles")
#: Column names recognised as compound names (compared case-insensitively, first match wins).
NAME_COLUMNS = ("name", "compound_name", "id", "title")
#: Intensity of the base peak in written libraries (library convention).
INTENSITY_SCALE = 999


class MoleculeFileError(ValueError):
    """A molecule file cannot be read (unknown type, missing SMILES column, ...)."""


# ============================================================================================ reading


def molecule_format(path: str | os.PathLike) -> str:
    """Molecule file type of ``path`` from its extension (``.gz`` ignored).

    Returns
    -------
    str
        One of :data:`MOLECULE_FORMATS`.

    Raises
    ------
    MoleculeFileError
        For an unknown extension.
    """
    suffixes = [suffix.lower().lstrip(".") for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] == "gz":
        suffixes = suffixes[:-1]
    kind = _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None:
        known = ", ".join(f".{suffix}" for suffix in _SUFFIX_FORMATS)
        raise MoleculeFileError(f"{path}: unknown molecule file type; expected one of {known} (optionally .gz)")
    return kind


def _label(where: str, name: str) -> str:
    return f"{where} ({name})" if name else where


def estimated_molecule_count(path: str | os.PathLike) -> int | None:
    """About how many molecules :func:`read_molecules` will yield from ``path`` (a progress bar's total), from one
    fast pass over the file (:func:`matchms_neims.io.count_records`); ``None`` when the file cannot be counted."""
    kind = molecule_format(path)
    kind = {"smi": "lines", "csv": "rows", "tsv": "rows"}.get(kind, kind)
    try:
        return count_records(path, kind)
    except (OSError, EOFError, zlib.error) as error:  # a damaged file: the reader reports it, the bar has no total
        logger.debug("%s: not counted for the progress bar (%s)", path, error)
        return None


def read_molecules(path: str | os.PathLike, smiles_column: str | None = None,
                   name_column: str | None = None) -> Iterator[MoleculeInput]:
    """Stream the molecules of a file, never loading the whole file.

    Parameters
    ----------
    path
        Molecule file, by extension:

        * ``.smi``, ``.smiles``, ``.txt``: one molecule per line, SMILES then an optional name
          (separated by a tab, or by whitespace when the line has no tab). Blank lines, lines
          starting with ``#`` and a header line starting with ``smiles`` are skipped.
        * ``.csv``, ``.tsv``: a header row, then one molecule per row. The SMILES column is
          ``smiles_column`` or the first of :data:`SMILES_COLUMNS` present (any case); the name column
          is ``name_column`` or the first of :data:`NAME_COLUMNS` present (any case), if any.
        * ``.sdf`` (also ``.sdf.gz``): read with RDKit; the name is the title line (``_Name``) or a
          ``NAME``/``name`` property. A record RDKit cannot read is yielded with an empty SMILES (so it
          is reported as an error downstream rather than silently lost).
        * ``.msp``, ``.mgf``: the ``smiles`` metadata and ``compound_name`` of each spectrum.

        Text formats and SDF may be gzip-compressed (``.smi.gz``, ``.csv.gz``, ``.sdf.gz``).
    smiles_column, name_column
        Column names for CSV/TSV input (default: detected).

    Returns
    -------
    Iterator of MoleculeInput
        In file order. ``record`` says where each molecule came from (``line 12``, ``row 5``,
        ``SDF record 3``, ``MSP record 7``), followed by the name in brackets when there is one.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (raised at once).
    MoleculeFileError
        For an unknown file type (at once) or a CSV/TSV without a SMILES column (when reading starts).
    """
    path = Path(path)
    kind = molecule_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"molecule file not found: {path}")
    if kind == "smi":
        return _until_damaged(path, _read_smi(path))
    if kind in ("csv", "tsv"):
        return _until_damaged(path, _read_table(path, "\t" if kind == "tsv" else ",", smiles_column, name_column))
    if kind == "sdf":
        return _until_damaged(path, _read_sdf(path))
    return _until_damaged(path, _read_spectra(path, kind.upper()))


def _until_damaged(path: Path, molecules: Iterator[MoleculeInput]) -> Iterator[MoleculeInput]:
    """``molecules``, ended by one input naming the problem when the file cannot be read on (a truncated or
    corrupt ``.gz``, a read error): the molecules read before it are still predicted, and the run goes on."""
    count = 0
    try:
        for molecule in molecules:
            count += 1
            yield molecule
    except (OSError, EOFError, zlib.error) as error:
        if count == 0 and isinstance(error, (PermissionError, IsADirectoryError)):
            raise MoleculeFileError(f"{path}: cannot read the file ({error.strerror or error})") from None
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        yield MoleculeInput("", "", f"{path.name} after record {count}",
                            problem=f"the file cannot be read beyond this point ({reason}); the rest of it is lost")


def _read_smi(path: Path) -> Iterator[MoleculeInput]:
    header_checked = False
    with open_text(path) as handle:
        for line_number, raw_line in enumerate(decoded_lines(handle, path, MAX_LINE_LENGTH), start=1):
            if CUT_LINE_MARK in raw_line:
                length = int(raw_line.rsplit(CUT_LINE_MARK, 1)[1])
                yield MoleculeInput("", "", f"line {line_number}", problem=f"a line of {length:,} characters, "
                                    f"longer than {MAX_LINE_LENGTH:,}: not a SMILES line (not read into memory)")
                continue
            line = raw_line.rstrip("\r\n")  # a leading tab means an empty SMILES column: kept
            if not line.strip() or line.lstrip()[0] == "#":
                continue
            if "\t" in line:
                smiles, _, rest = line.partition("\t")
                name = rest.split("\t", 1)[0].strip()
                smiles = smiles.strip()
            else:
                parts = line.strip().split(None, 1)
                smiles = parts[0]
                name = parts[1].strip() if len(parts) > 1 else ""
            if not header_checked:
                header_checked = True
                if smiles.lower() == "smiles":
                    continue
            yield MoleculeInput(smiles, name, _label(f"line {line_number}", name))


def _find_column(fieldnames: list[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                 path: Path) -> str | None:
    lookup = {name.strip().lower(): name for name in fieldnames if name is not None}
    if wanted is not None:
        if wanted in fieldnames:
            return wanted
        if wanted.strip().lower() in lookup:
            return lookup[wanted.strip().lower()]
        raise MoleculeFileError(f"{path}: no {what} column {wanted!r}; the columns are {fieldnames}")
    for candidate in candidates:
        if candidate in lookup:
            return lookup[candidate]
    return None


def _read_table(path: Path, delimiter: str, smiles_column: str | None,
                name_column: str | None) -> Iterator[MoleculeInput]:
    with open_text(path, newline="") as handle:
        reader = csv.reader(decoded_lines(handle, path), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        fieldnames = [column.strip() for column in header]
        smiles_key = _find_column(fieldnames, smiles_column, SMILES_COLUMNS, "SMILES", path)
        if smiles_key is None:
            raise MoleculeFileError(f"{path}: no SMILES column found (looked for {', '.join(SMILES_COLUMNS)}, any "
                                    f"case); the columns are {fieldnames}. Name the column with smiles_column.")
        name_key = _find_column(fieldnames, name_column, NAME_COLUMNS, "name", path)
        smiles_index = fieldnames.index(smiles_key)
        name_index = fieldnames.index(name_key) if name_key is not None else None
        row_number = 0
        while True:
            row_number += 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:  # e.g. a cell over csv's field limit (131,072 characters): this row only
                yield MoleculeInput("", "", f"row {row_number}", problem=f"unreadable {path.suffix} row: {error}")
                continue
            if not row or not any(cell.strip() for cell in row):
                continue
            smiles = row[smiles_index].strip() if smiles_index < len(row) else ""
            name = row[name_index].strip() if name_index is not None and name_index < len(row) else ""
            yield MoleculeInput(smiles, name, _label(f"row {row_number}", name))


def _sdf_name(mol) -> str:
    for key in ("_Name", "NAME", "name", "Name"):
        if mol.HasProp(key):
            value = mol.GetProp(key).strip()
            if value:
                return value
    return ""


def _read_sdf(path: Path) -> Iterator[MoleculeInput]:
    from rdkit import Chem

    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as handle:
        supplier = Chem.ForwardSDMolSupplier(handle)
        for record_number, mol in enumerate(supplier, start=1):
            where = f"SDF record {record_number}"
            if mol is None:
                yield MoleculeInput("", "", f"{where} (RDKit cannot read the structure)")
                continue
            name = _sdf_name(mol)
            try:
                smiles = Chem.MolToSmiles(mol)
            except Exception:  # noqa: BLE001 - RDKit raises several types for exotic structures
                smiles = ""
            yield MoleculeInput(smiles, name, _label(where, name))


def _read_spectra(path: Path, kind: str) -> Iterator[MoleculeInput]:
    # only the metadata matter here: a record with bad peaks still names a molecule to predict; a record the
    # reader cannot read at all (NUL bytes, no END IONS) becomes an input with its problem, listed as skipped
    problems: list = []
    record_number = 0

    def unreadable() -> Iterator[MoleculeInput]:
        nonlocal record_number
        for problem in problems:
            record_number += 1
            where = f"{kind} record {record_number} (line {problem.line})"
            yield MoleculeInput("", problem.record, _label(where, problem.record), problem=problem.reason)
        problems.clear()

    for record in iter_records(path, problems, check_peaks=False):
        yield from unreadable()
        record_number += 1
        metadata = record.metadata
        name = str(metadata.get("compound_name") or "").strip()
        smiles = str(metadata.get("smiles") or "").strip()
        yield MoleculeInput(smiles, name, _label(f"{kind} record {record_number}", name))
    yield from unreadable()


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
        ``(record, smiles, reason)`` of every skipped molecule, chunk by chunk in input order.
    file_format
        ``"msp"`` or ``"mgf"``.
    """

    n_input: int
    n_written: int
    n_failed: int
    output: Path
    errors_path: Path | None = None
    elapsed: float = 0.0
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    file_format: str = "msp"

    def __str__(self) -> str:
        rate = self.n_input / self.elapsed if self.elapsed > 0 else 0.0
        text = (f"Predicted {self.n_written:,} of {self.n_input:,} molecules in {self.elapsed:.1f} s "
                f"({rate:,.0f} mol/s); library written to {self.output} ({self.file_format.upper()}).")
        if self.n_failed:
            shown = "; ".join(f"{record}: {reason}" for record, _, reason in self.errors[:3])
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


def _chunk_errors(chunk: list[MoleculeInput], batch) -> list[tuple[str, str, str]]:
    """``(record, smiles, reason)`` of the molecules of ``chunk`` that the predictor rejected."""
    if not batch.errors:
        return []
    predicted = {id(molecule) for molecule in batch.molecules}
    failed = [molecule for molecule in chunk if id(molecule) not in predicted]
    if len(failed) == len(batch.errors):
        return [(error.record, molecule.smiles, error.reason) for error, molecule in zip(batch.errors, failed)]
    smiles_of = {molecule.record: molecule.smiles for molecule in chunk}
    return [(error.record, smiles_of.get(error.record, ""), error.reason) for error in batch.errors]


def duplicate_reason(first_record: str, key: str, key_is_inchikey: bool) -> str:
    """The reason listed for a molecule skipped as a duplicate of ``first_record``."""
    return f"duplicate of {first_record} (same {'InChIKey' if key_is_inchikey else 'canonical SMILES'} {key})"


def write_errors(errors: Iterable[tuple[str, str, str]], path: str | os.PathLike) -> Path:
    """Write skipped molecules as a TSV (columns ``record``, ``smiles``, ``reason``), atomically.

    A SMILES longer than :data:`~matchms_neims.chemistry.MAX_SMILES_LENGTH` is written shortened (with its
    length), so that one 200 MB line does not become a 200 MB error list.
    """
    path = Path(path)
    with atomic_output(path) as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(("record", "smiles", "reason"))
        writer.writerows((record, shortened(smiles, MAX_SMILES_LENGTH), reason) for record, smiles, reason in errors)
    return path



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

    errors: list[tuple[str, str, str]] = []
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
                errors.extend(_chunk_errors(chunk, batch))
                parts = []
                for vector, molecule, info, uncertainty, expert_weights in zip(
                        batch.vectors, batch.molecules, batch.infos, batch.per_molecule(batch.uncertainty),
                        batch.per_molecule(batch.expert_weights)):
                    mz, intensities = _library_peaks(vector, min_relative_intensity)
                    if not mz:
                        errors.append((molecule.record, molecule.smiles,
                                       f"no predicted peak above {min_relative_intensity:g} of the base peak"))
                        continue
                    key = info.inchikey or info.smiles
                    if skip_duplicates:
                        if key in first_record_of:
                            errors.append((molecule.record, molecule.smiles, duplicate_reason(
                                first_record_of[key], key, bool(info.inchikey))))
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
        errors_path = write_errors(errors, errors_path)
    summary = LibrarySummary(n_input=n_input, n_written=n_written, n_failed=n_input - n_written, output=output,
                             errors_path=errors_path, elapsed=time.perf_counter() - start, errors=errors,
                             file_format=file_format)
    logger.debug("%s", summary)
    return summary


__all__ = ["LibrarySummary", "MoleculeFileError", "build_library", "molecule_format", "read_molecules",
           "write_errors"]
