"""Reading MSP files: NIST exports (coded ``Synon: $:NN`` lines, ``CAS#``/``NIST#`` on one line), MassBank,
MoNA (``Comments`` key=value pairs), RIKEN / MS-DIAL (``Name`` not first) and Golm GMD (decimal commas).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from matchms_neims.io.record_reading import (
    MSP_KEY_ALIASES,
    NO_PEAK_LIMIT,
    RecordBuilder,
    looks_like_peaks,
    read_records,
    simple_peak_pair,
)
from matchms_neims.io.records import RecordProblems, SpectrumRecord
from matchms_neims.io.text_files import repaired_line
from matchms_neims.problems import RecordProblem

#: Keys of Golm Metabolome Database (GMD) exports, written as plain lines or as ``Synon: KEY: value`` lines,
#: renamed as matchms renames them (its ``synon_metb_*`` and ``synon_ri`` conversions). ``METB N`` lines are
#: the metabolite's names: they go to ``synonyms``. Other GMD keys keep their own name (``mst_n``, ``gmd_link``).
_GOLM_KEY_ALIASES = {
    "ri": "retention_index",
    "metb inchikey": "inchikey",
    "metb inchi": "inchi",
    "metb cas": "cas",
    "metb kegg": "kegg",
    "metb class": "compound_class",
    "metb n": "synonyms",
}
#: First words of the GMD keys; a ``Synon:`` line whose text starts with one of them and a colon is a key.
_GOLM_KEY_WORDS = frozenset({"metb", "mst", "gmd", "ri"})
#: Plain MSP keys that GMD also writes inside ``Synon:`` lines (``Synon: MW: 220,457``).
_SYNON_MSP_KEYS = frozenset({"formula", "mw", "exactmass", "inchikey", "inchi", "smiles", "cas#"})
#: GMD writes numbers with a decimal comma (``RI: 986,12``, ``MW: 175,301``); read in GMD records only.
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")
#: NIST's coded ``Synon: $:NN...`` lines (lib2nist exports) read as metadata keys; other codes stay in
#: ``synonyms`` as written (``$:00in-source``).
_NIST_SYNON_CODES = {
    "03": "adduct",
    "04": "precursor_mz",
    "05": "collision_energy",
    "06": "instrument_type",
    "07": "instrument",
    "10": "ionization",
    "11": "ionmode",
    "12": "collision_gas",
    "28": "inchikey",
}
_NIST_SYNON_CODE = re.compile(r"\$:(\d\d)(.*)")
_NIST_ION_MODES = {"p": "positive", "n": "negative"}
_COMMENT_PAIR = re.compile(r'"([^"=]+)=([^"]*)"')


def _parse_comment_pairs(value: str, metadata: dict) -> None:
    """Pull ``"key=value"`` pairs (MoNA / NIST exports put SMILES and InChIKey there) into the metadata."""
    for key, pair_value in _COMMENT_PAIR.findall(value):
        key = MSP_KEY_ALIASES.get(key.strip().lower(), key.strip().lower().replace(" ", "_"))
        metadata.setdefault(key, pair_value.strip())


def _is_golm_record(metadata: dict) -> bool:
    """Whether a record read so far holds GMD keys (``mst_n``, ``metb``, ``gmd_link``, ...)."""
    return any(key.startswith(("metb", "mst", "gmd")) for key in metadata)


def _store_value(metadata: dict, key: str, value: str, from_synon: bool = False) -> None:
    """Store one ``key: value`` line of an MSP record under its harmonised name.

    Parameters
    ----------
    metadata
        The record's metadata, updated in place.
    key
        The key as written, in lower case (``"num peaks"``, ``"metb inchikey"``).
    value
        The value, stripped.
    from_synon
        The pair was coded in a ``Synon:`` line (GMD): a key already set is kept, and the record is a GMD one.

    Notes
    -----
    GMD keys get matchms's names (:data:`_GOLM_KEY_ALIASES`), ``METB N`` names are added to ``synonyms``,
    and in GMD records the decimal comma of ``RI`` and ``MW`` becomes a point (``986,12`` -> ``986.12``).
    """
    name = _GOLM_KEY_ALIASES.get(key) or MSP_KEY_ALIASES.get(key) or key.replace(" ", "_")
    if name == "synonyms":
        metadata.setdefault("synonyms", []).append(value)
        return
    if (name in ("retention_index", "nominal_mass") and "," in value and _DECIMAL_COMMA.fullmatch(value)
            and (from_synon or _is_golm_record(metadata))):
        value = value.replace(",", ".")
    if from_synon:
        metadata.setdefault(name, value)
    else:
        metadata[name] = value


def _add_synon(metadata: dict, value: str) -> None:
    """Read one ``Synon:`` line: a coded key (NIST ``$:28<InChIKey>``, GMD ``METB InChIKey: ...``) or a name.

    Coded keys become metadata keys (``inchikey``, ``retention_index``, ``adduct``, ...; a key already set
    by its own line is kept). Names, NIST codes not in :data:`_NIST_SYNON_CODES` and coded lines without a
    value are added to the list ``synonyms`` as written.
    """
    if value.startswith("$:"):
        coded = _NIST_SYNON_CODE.match(value)
        key = _NIST_SYNON_CODES.get(coded.group(1)) if coded else None
        text = coded.group(2).strip() if coded else ""
        if key is not None and text:
            if key == "ionmode":
                text = _NIST_ION_MODES.get(text.lower(), text)
            metadata.setdefault(key, text)
            return
    else:
        code, separator, text = value.partition(":")
        code, text = code.strip().lower(), text.strip()
        if separator and text and (code in _SYNON_MSP_KEYS or (code.split() or [""])[0] in _GOLM_KEY_WORDS):
            _store_value(metadata, code, text, from_synon=True)
            return
    metadata.setdefault("synonyms", []).append(value)


def iter_msp(path: str | os.PathLike, problems: list[RecordProblem] | None = None, on_error: str = "skip",
             check_peaks: bool = True) -> Iterator[SpectrumRecord]:
    """Stream the records of an MSP file, skipping bad records.

    Parameters
    ----------
    path
        MSP file (NIST export, MassBank, MoNA, or this package's own output).
    problems
        A list that receives a :class:`RecordProblem` for every skipped record.
    on_error
        ``"skip"`` (default): log and skip bad records and go on; ``"raise"``: raise
        :class:`SpectrumFileError` at the first one.
    check_peaks
        ``False`` keeps records whose peaks are bad (for reading only their metadata, e.g. the molecules of
        a library): peak lines that do not parse are left out, and NaN, negative or out-of-range values
        and truncation are not checked.

    Yields
    ------
    SpectrumRecord
        One per good record, in file order. A record is skipped, naming the file, the line and the record,
        when a peak line holds non-numeric text or an odd number of values, when a peak has a NaN or
        infinite value, a negative intensity or an m/z outside ``0..MAX_READ_MZ``, when a line is binary
        (NUL bytes), or when the file ends inside its peak list (a truncated file). Records without
        ``Num Peaks`` are read when their peak lines follow the metadata; records with fewer peaks than
        ``Num Peaks`` announces are kept unless they end the file. ``Name`` need not be a record's first
        line (RIKEN / MS-DIAL exports): a record ends at a blank line, at a second ``Name`` line or at a
        metadata line after its announced peaks. Coded ``Synon:`` lines (NIST ``$:NN``, Golm/GMD
        ``KEY: value``) are read as metadata keys, see :class:`SpectrumRecord`.
    """
    yield from read_records(_msp_records, path, problems, on_error, check_peaks)


def _msp_records(path: Path, handle, report: RecordProblems, check_peaks: bool) -> Iterator[SpectrumRecord]:
    """The records of an open MSP file (the body of :func:`iter_msp`)."""
    record = RecordBuilder(1, check_peaks)
    line_number = 0
    warned: list = []
    # the record's peak lists and how many peaks it may still take, as locals: the peak lines are most lines
    mz, intensities, peak_limit = record.mz, record.intensities, 0
    for line_number, raw_line in enumerate(handle, start=1):
        line = raw_line.strip().lstrip("\ufeff")
        if not line:
            if record:
                finished = record.finish(path, report, line_number)
                if finished is not None:
                    yield finished
            record = RecordBuilder(line_number + 1, check_peaks)
            mz, intensities, peak_limit = record.mz, record.intensities, 0
            continue
        if "\x00" in line:
            record.fail(line_number, "binary data (NUL bytes): not a text MSP file?")
            continue
        if len(mz) < peak_limit and (line[0] not in "Nn" or line[:5].lower() != "name:"):
            pair = simple_peak_pair(line) if record.problem is None else None
            if pair is None:
                record.add_peak_line(line_number, line)
            else:  # the common case, inline for speed
                mz.append(pair[0])
                intensities.append(pair[1])
                if len(mz) > record.max_peaks:
                    record.check_size(line_number)
            continue
        line = repaired_line(line, path, line_number, warned)
        key, sep, value = line.partition(":")
        if not sep or (not record.in_peaks and key[:1].isdigit()):
            if not record.in_peaks and looks_like_peaks(line):  # peaks without a Num Peaks line
                record.in_peaks, peak_limit = True, NO_PEAK_LIMIT
                record.add_peak_line(line_number, line)
            continue
        key = key.strip().lower()
        value = value.strip()
        # A new record without a blank separator line: a second Name line, a Name line after the peaks, or a
        # metadata line after all the peaks Num Peaks announced (RIKEN / MS-DIAL records, where Name is not
        # the first line, run together). A Name line after other metadata is the same record's.
        if (key == "name" and (record.named or record.in_peaks)) or (
                record.in_peaks and 0 <= record.expected_peaks <= len(mz) and not key[:1].isdigit()):
            finished = record.finish(path, report, line_number)
            if finished is not None:
                yield finished
            record = RecordBuilder(line_number, check_peaks)
            mz, intensities, peak_limit = record.mz, record.intensities, 0
        if key == "name":
            record.named = True
        if key == "synon":
            _add_synon(record.metadata, value)
            continue
        if key == "comments" and "=" in value:
            _parse_comment_pairs(value, record.metadata)
        if key == "cas#" and ";" in value:
            # NIST exports put two fields on one line: "CAS#: 64-17-5;  NIST#: 1234"
            value, _, rest = value.partition(";")
            value = value.strip()
            other_key, _, other_value = rest.partition(":")
            if other_value:
                other_key = other_key.strip().lower()
                record.metadata[MSP_KEY_ALIASES.get(other_key, other_key)] = other_value.strip()
        if key == "num peaks":
            record.in_peaks = True
            try:
                record.expected_peaks = int(float(value))
            except ValueError:
                record.expected_peaks = -1
            peak_limit = record.expected_peaks if record.expected_peaks >= 0 else NO_PEAK_LIMIT
        _store_value(record.metadata, key, value)
    if record:
        truncated = record.in_peaks and 0 <= len(record.mz) < record.expected_peaks
        finished = record.finish(path, report, line_number, truncated=truncated)
        if finished is not None:
            yield finished
