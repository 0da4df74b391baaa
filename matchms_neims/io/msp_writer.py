"""Writing MSP records.
"""

from __future__ import annotations

from matchms_neims.io.record_text import SKIPPED_KEYS, one_line_text, peak_lines

_MSP_HEADER_KEYS = (
    ("compound_name", "Name"),
    ("formula", "Formula"),
    ("nominal_mass", "MW"),
    ("exact_mass", "ExactMass"),
    ("smiles", "SMILES"),
    ("inchikey", "InChIKey"),
)


def msp_header(metadata: dict) -> str:
    """The metadata lines of an MSP record (``Name:`` first), each ending with a newline."""
    lines = []
    for key, label in _MSP_HEADER_KEYS:
        value = metadata.get(key)
        if value not in (None, ""):
            lines.append(f"{label}: {one_line_text(value)}\n")
    for synonym in metadata.get("synonyms", []) or []:
        lines.append(f"Synon: {one_line_text(synonym)}\n")
    written = {key for key, _ in _MSP_HEADER_KEYS} | SKIPPED_KEYS
    for key, value in metadata.items():
        if key not in written and value not in (None, ""):
            lines.append(f"{one_line_text(key)}: {one_line_text(value)}\n")
    return "".join(lines)


def format_msp_record(metadata: dict, mz, intensities) -> str:
    """Format one record as NIST-style MSP text (``Name:`` first, ``Num Peaks:`` then one peak per line)."""
    return "".join((msp_header(metadata), "Num Peaks: ", str(len(mz)), "\n", peak_lines(mz, intensities), "\n"))
