"""Writing files so that an interruption never leaves a half-written one: write beside, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None], *, mode: int = 0o644) -> Path:
    """Write a file atomically: to a temporary file in the same folder, flushed to disk, then renamed.

    Readers see either the old file or the complete new one; an exception or
    a kill while writing leaves no partial file (the temporary one is
    removed on exceptions).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if needed; an existing file
        is replaced).
    content : bytes or callable
        The bytes, or ``write(stream)`` that writes them to a binary stream.
    mode : int
        Permission bits of the new file.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if isinstance(content, (bytes, bytearray, memoryview)):
                stream.write(content)
            else:
                content(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
