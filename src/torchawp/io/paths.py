"""Paths a command writes to: an exclusive lock on a directory for the block that writes it,
and ``mkdir -p`` whose failure is one line."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, RunDirInUse

_held: dict[str, int] = {}  # resolved path -> depth: the locks this process holds


@contextlib.contextmanager
def exclusive_lock(directory: Path, what: str = "run directory") -> Iterator[None]:
    """Hold an exclusive lock (flock) on ``directory`` itself for the block; it is created if
    missing.

    Another process that asks for it gets a :class:`RunDirInUse` error at once. Re-entrant
    within a process. The kernel drops the lock when the process dies, however it dies, so a
    killed run never leaves a stale lock behind, and no lock file is left in the directory. A
    directory the lock created is removed again if the block left it empty."""
    try:
        import fcntl  # POSIX only
    except ImportError:  # Windows: no flock
        warnings.warn(f"cannot lock {directory} on this platform; do not run two torchawp "
                      f"processes on it at once", stacklevel=3)
        yield
        return
    directory = Path(directory)
    created = not directory.exists()
    make_directory(directory, what)
    key = str(directory.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirInUse(f"{what} {directory} is in use by another torchawp process; wait "
                          f"for it to finish, or choose another directory") from None
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        if created:  # a refused or failed start leaves no empty directory behind
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if still empty
        os.close(fd)  # releases the lock


def make_directory(directory: Path, what: str = "output directory") -> None:
    """``mkdir -p``, with a file in the way said in one line (naming the file) instead of a
    FileExistsError or NotADirectoryError."""
    in_the_way = next((p for p in (directory, *directory.parents) if p.exists()
                       and not p.is_dir()), None)
    if in_the_way is not None:
        raise ConfigError(f"{what} {directory} cannot be made: {in_the_way} is a file; choose "
                          f"another directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {directory} cannot be made ({exc.strerror}); choose "
                          f"another directory") from None


def output_files(option: str, paths, overwrite: bool = False) -> None:
    """Before anything is computed, one line for a file that cannot or must not be written: a
    directory where the file goes, a file where a folder above it goes, an existing file
    without ``--overwrite``."""
    for path in map(Path, paths):
        if path.is_dir():
            raise ConfigError(f"{option} {path} is a directory; {option} names the file to "
                              f"write (for example {path / 'model.pt'})")
        in_the_way = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if in_the_way is not None:
            raise ConfigError(f"{option} {path} cannot be written: {in_the_way} is a file")
        if path.exists() and not overwrite:
            raise ConfigError(f"{path} exists; pass --overwrite to replace it, or choose "
                              f"another {option}")


def beside(path, out_dir=None, name: str = "") -> Path:
    """Where a command writes what it measured of ``path`` (a run directory or a checkpoint
    file): ``out_dir`` if given, else the run directory or the checkpoint's folder, with
    ``name`` below it."""
    if out_dir:
        return Path(out_dir)
    path = Path(path)
    return (path if path.is_dir() else path.parent) / name
