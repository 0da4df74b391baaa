"""Small helpers shared across the package: atomic file output, quiet matchms logging, file hashes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("matchms_neims")


def _temporary_beside(path: Path) -> str:
    """Create an empty temporary file next to ``path`` with the permissions a new file would get."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    return tmp_name


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
    tmp_name = _temporary_beside(path)
    try:
        yield Path(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


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
