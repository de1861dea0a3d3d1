"""Resumable training: finished pixel chunks on disk, tied to one training set and settings by a key.

A checkpoint folder holds ``manifest.json`` (the training set's hash, the
settings, the chunk size and the key hashing them) and one ``chunk-NNNNN.npz``
per finished chunk (no pickle), each written atomically. A later training
with the same data and settings loads the finished chunks; another one is
refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bayesslam._files import atomic_write
from bayesslam.errors import BayesSlamError
from bayesslam.train.chunk import CHUNK_ARRAYS

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "Checkpoint", "remove_checkpoint",
           "training_set_hash"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "bayesslam.slam-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(BayesSlamError, ValueError):
    """A checkpoint directory belongs to another training set or other settings, or cannot be read."""


def training_set_hash(labels: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> str:
    """Hex sha256 of a training set (labels, flux, ivar as float64, with shapes)."""
    digest = hashlib.sha256(b"bayesslam-training-set-v1\0")
    for array in (labels, flux, ivar):
        array = np.ascontiguousarray(array, dtype="<f8")
        digest.update(json.dumps(list(array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def remove_checkpoint(directory: str | Path) -> bool:
    """Delete a checkpoint's files (``manifest.json``, ``chunk-*.npz``), and the folder if nothing else is in it.

    For after a finished training, whose model is saved. Other files in the
    folder are left alone. Returns whether the folder is gone.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return not directory.exists()
    for path in [directory / "manifest.json", *directory.glob("chunk-*.npz")]:
        path.unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        logger.info("checkpoint files removed from %s; the folder holds other files and is kept", directory)
        return False
    return True


class Checkpoint:
    """A directory of finished pixel chunks, tied to one training set and settings by a key."""

    def __init__(self, directory: Path, key: str, manifest: Mapping[str, Any]) -> None:
        self.directory = directory
        self.key = key
        self.manifest = dict(manifest)

    def open(self) -> None:
        """Create the directory and manifest, or check an existing manifest matches."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "manifest.json"
        if path.exists():
            try:
                existing = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CheckpointError(
                    f"{path}: unreadable checkpoint manifest ({exc}); delete {self.directory} to start afresh"
                ) from exc
            if existing.get("key") != self.key:
                what = []
                if existing.get("training_set_sha256") != self.manifest["training_set_sha256"]:
                    what.append("a different training set")
                if existing.get("settings") != self.manifest["settings"]:
                    what.append("different settings")
                if existing.get("chunk_size") != self.manifest["chunk_size"]:
                    what.append("a different chunk size")
                raise CheckpointError(
                    f"{self.directory} holds the checkpoint of {' and '.join(what) or 'another training'}; "
                    "use a new checkpoint_dir, or delete this one to start afresh"
                )
            return
        stray = sorted(self.directory.glob("chunk-*.npz"))
        if stray:
            raise CheckpointError(
                f"{self.directory} holds chunk files but no manifest; delete them or use a new checkpoint_dir"
            )
        atomic_write(path, json.dumps({**self.manifest, "key": self.key}, indent=1, sort_keys=True).encode())

    def chunk_path(self, index: int) -> Path:
        return self.directory / f"chunk-{index:05d}.npz"

    def load(self, index: int, start: int, stop: int) -> dict[str, np.ndarray] | None:
        """Read a finished chunk, or ``None`` if it is absent or unreadable (then it is retrained)."""
        path = self.chunk_path(index)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                data = {name: archive[name] for name in archive.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            logger.warning("checkpoint chunk %s unreadable (%s); training it again", path, exc)
            return None
        if data.get("key") is None or data["key"].tobytes().decode("ascii", "replace") != self.key:
            raise CheckpointError(f"{path} belongs to another training; delete {self.directory} to start afresh")
        if int(data.get("start", -1)) != start or int(data.get("stop", -1)) != stop:
            raise CheckpointError(f"{path} covers other pixels; delete {self.directory} to start afresh")
        if any(name not in data for name in CHUNK_ARRAYS):
            logger.warning("checkpoint chunk %s incomplete; training it again", path)
            return None
        return {name: data[name] for name in CHUNK_ARRAYS}

    def save(self, index: int, start: int, stop: int, result: Mapping[str, np.ndarray]) -> None:
        """Write a finished chunk atomically."""
        payload = {name: np.asarray(result[name]) for name in CHUNK_ARRAYS}
        payload["key"] = np.frombuffer(self.key.encode("ascii"), dtype=np.uint8)
        payload["start"] = np.array(start)
        payload["stop"] = np.array(stop)
        path = self.chunk_path(index)
        atomic_write(path, lambda stream: np.savez(stream, **payload))
