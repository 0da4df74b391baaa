"""Writing MGF records.
"""

from __future__ import annotations

from matchms_neims.io.record_text import SKIPPED_KEYS, one_line_text, peak_lines


def mgf_header(metadata: dict) -> str:
    """``BEGIN IONS`` and the metadata lines of an MGF record, each ending with a newline."""
    title = metadata.get("compound_name") or metadata.get("spectrum_id") or metadata.get("inchikey") or ""
    lines = ["BEGIN IONS\n", f"TITLE={one_line_text(title)}\n"]
    for key, value in metadata.items():
        if key in SKIPPED_KEYS or key == "title" or value in (None, ""):
            continue
        lines.append(f"{one_line_text(key).upper()}={one_line_text(value)}\n")
    return "".join(lines)


def format_mgf_record(metadata: dict, mz, intensities) -> str:
    """Format one record as MGF text."""
    return "".join((mgf_header(metadata), peak_lines(mz, intensities), "END IONS\n\n"))
