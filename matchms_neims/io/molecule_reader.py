"""Reading molecules to predict: SMILES lists, CSV/TSV tables, SDF and the molecules named by MSP/MGF spectra.

:func:`read_molecules` streams molecules from a file, one :class:`MoleculeInput` at a time, each labelled with where
it came from (``line 12 (ethanol)``, ``row 5``, ``SDF record 3``, ``MSP record 7 (caffeine)``) so that a molecule
that cannot be predicted is reported by name. :func:`as_molecule_input` accepts the other things users pass as
molecules (SMILES strings, pairs, dicts, matchms spectra).
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from matchms import Spectrum

from matchms_neims.io.spectrum_files import iter_records
from matchms_neims.io.text_files import CUT_LINE_MARK, MAX_LINE_LENGTH, count_records, decoded_lines, is_gzip, open_text

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


@dataclass
class MoleculeInput:
    """A molecule to predict: SMILES plus the name and id used in outputs and error messages.

    ``problem``, when set, is why the reader could not read the record (e.g. NUL bytes in an MSP record): the
    molecule is then not predicted but listed with that reason, so that no input record disappears unreported.
    """

    smiles: str
    name: str = ""
    record: str = ""
    problem: str = ""


def as_molecule_input(item, position: int) -> MoleculeInput:
    """Accept a SMILES string (or UTF-8 bytes), ``(smiles, name)``, a dict with ``smiles``, or a matchms Spectrum.

    Anything else (``None``, a pandas missing value, a number) becomes an input whose ``problem`` says why, so
    that one bad item is listed as skipped and the rest of the batch is predicted.
    """
    if isinstance(item, MoleculeInput):
        return item
    record = f"record {position + 1}"
    if isinstance(item, str):
        return MoleculeInput(item, "", record)
    if isinstance(item, (bytes, bytearray)):
        try:
            return MoleculeInput(bytes(item).decode("utf-8"), "", record)
        except UnicodeDecodeError:
            return MoleculeInput("", "", record, problem="SMILES bytes are not UTF-8 text")
    if isinstance(item, Spectrum):
        name = str(item.get("compound_name") or "")
        label = str(item.get("spectrum_id") or name or record)
        return MoleculeInput(str(item.get("smiles") or ""), name, label)
    if isinstance(item, dict):
        name = str(item.get("compound_name") or item.get("name") or "")
        smiles = item.get("smiles")
        return MoleculeInput(smiles if isinstance(smiles, str) else "", name, str(item.get("record") or name or record))
    if isinstance(item, (tuple, list)) and item:
        name = str(item[1]) if len(item) > 1 and isinstance(item[1], str) else ""
        smiles = item[0].decode("utf-8", "replace") if isinstance(item[0], bytes) else item[0]
        if not isinstance(smiles, str):
            return MoleculeInput("", name, name or record, problem=_not_a_smiles(smiles))
        return MoleculeInput(smiles, name, name or record)
    return MoleculeInput("", "", record, problem=_not_a_smiles(item))


def _not_a_smiles(item) -> str:
    if item is None or (isinstance(item, float) and item != item):  # None, NaN (a pandas missing value)
        return f"no SMILES given ({item!r})"
    return f"cannot read a molecule from {type(item).__name__} {str(item)[:40]!r}"


class MoleculeFileError(ValueError):
    """A molecule file cannot be read (unknown type, missing SMILES column, ...)."""


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
