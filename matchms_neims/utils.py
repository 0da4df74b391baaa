"""Small helpers shared across the package: atomic file output, quiet matchms logging, file hashes."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("matchms_neims")


def _temporary_beside(path: Path) -> str:
    """Create an empty temporary file next to ``path`` with the permissions a new file would get.

    Its name, ``.<name>.<pid>.<random>.tmp``, says which process writes it, so that the temporary files of
    killed runs can be told from those of running ones (:func:`remove_stale_temporaries`).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    return tmp_name


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed runs left beside ``path``; returns those removed.

    Only this tool's own files are touched: names of the pattern ``.<name>.<pid>.<random>.tmp`` (see
    :func:`_temporary_beside`), owned by this user, whose writing process no longer exists.
    """
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    own_name = re.compile(r"(\d+)\.[^.]+\.tmp")  # <pid>.<mkstemp's random letters>.tmp, nothing else
    try:
        candidates = list(path.parent.glob(f"{glob.escape(prefix)}*.tmp"))
    except OSError:
        return removed
    for candidate in candidates:
        match = own_name.fullmatch(candidate.name[len(prefix):])
        if match is None or int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1))):
            continue
        try:
            if candidate.stat().st_uid != os.getuid() or not candidate.is_file():
                continue
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            continue
    if removed:
        logger.info("removed %d temporary file(s) of earlier killed runs beside %s", len(removed), path)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file beside ``path`` and move it onto ``path`` only when the block succeeds.

    An interrupt or exception inside the block removes the temporary file, so ``path`` either keeps
    its previous content or receives the complete new content, never half of it.

    Parameters
    ----------
    path
        Final destination.
    mode
        ``"w"`` for text or ``"wb"`` for binary output.
    encoding
        Text encoding (ignored for binary mode).
    """
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for libraries that open files themselves (h5py, torch.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp_name = _temporary_beside(path)
    try:
        yield Path(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def check_output_paths(outputs: dict[str, str | os.PathLike | None],
                       inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse, before any work starts, output paths that cannot be written or that name the same file.

    Parameters
    ----------
    outputs
        Option name (for the message, e.g. ``"--errors"``) -> output path; ``None`` values are skipped.
    inputs
        Option name -> input path that no output may replace.

    Raises
    ------
    ValueError
        When two outputs, or an output and an input, are the same file; when an output is a directory; or
        when its folder cannot be created or written (a temporary file is created there and removed).
    """
    seen: dict[Path, str] = {}
    for name, path in (inputs or {}).items():
        if path is not None:
            seen[Path(path).resolve()] = name
    for name, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise ValueError(f"{name} {path} is the same file as {seen[resolved]}; give them different paths")
        seen[resolved] = name
        if resolved.is_dir():
            raise ValueError(f"{name} {path} is a directory, not a file")
        try:
            resolved.parent.mkdir(parents=True, exist_ok=True)
            os.unlink(_temporary_beside(resolved))
        except OSError as error:
            raise ValueError(f"{name} {path}: cannot write there ({error.strerror or error})") from None


@contextlib.contextmanager
def quiet_matchms(level: int = logging.ERROR) -> Iterator[None]:
    """Temporarily raise the matchms logger level.

    matchms warns once per spectrum when an EI spectrum has no precursor m/z; EI spectra never have
    one, so these warnings are noise for this package.
    """
    matchms_logger = logging.getLogger("matchms")
    previous = matchms_logger.level
    matchms_logger.setLevel(level)
    try:
        yield
    finally:
        matchms_logger.setLevel(previous)


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def available_cores() -> int:
    """CPU cores this process may use (its affinity where the platform tells it, else all logical cores)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
