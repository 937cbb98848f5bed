"""Where files live: every file the project reads or writes under a workdir, a data dir or a
cache goes through `etils.epath`, so local paths and gs://... take one code path.

epath has two backends for gs://: TensorFlow's GCS client, or fsspec's gcsfs. This module
chooses gcsfs (`EPATH_USE_TF=false`, unless the environment already says otherwise) for
everything that imports `dvd_gan`: Orbax's checkpoints, TFDS and JAX's compilation cache
then take it too. TensorFlow's client has no endpoint setting, so no test could reach it;
gcsfs, google-cloud-storage (which Orbax asks about a bucket's namespace before deleting an
old step) and tensorstore (Orbax's arrays) all honour an emulator's address, and the tests
run the commands on gs:// paths against one (tests/test_gcs.py).
"""

import os
import shutil
import tempfile

from absl import logging
from etils import epath

# Read by epath at each call, so setting it here, before any file is touched, is enough.
os.environ.setdefault("EPATH_USE_TF", "false")


def is_remote(path) -> bool:
    """True for gs://, s3://, ... paths; False for local ones."""
    return "://" in os.fspath(path)


def files_under(root) -> list[epath.Path]:
    """Every file under `root` (local or remote), as full paths, in walk order. (epath's
    own walk() yields a remote directory without its gs:// prefix.)"""
    root = epath.Path(root)
    bare = os.fspath(root).split("://", 1)[-1]
    found = []
    for directory, _, names in root.walk():
        relative = os.path.relpath(os.fspath(directory).split("://", 1)[-1], bare)
        base = root if relative == "." else root / relative
        found += [base / name for name in names]
    return found


def copy_tree(source, target, last: tuple[str, ...] = (), progress_every: int = 100) -> int:
    """Copies every file under `source` to the same relative path under `target` (either may
    be remote), files named in `last` after all others, logging progress; returns the bytes
    copied. Files are copied whole, one after another: an interrupted copy leaves whole files,
    and running it again redoes it."""
    source, target = epath.Path(source), epath.Path(target)
    files = sorted(files_under(source), key=lambda path: (path.name in last, os.fspath(path)))
    copied = 0
    for index, path in enumerate(files, 1):
        destination = target / os.path.relpath(os.fspath(path), os.fspath(source))
        destination.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as reader, destination.open("wb") as writer:
            shutil.copyfileobj(reader, writer, length=16 << 20)  # shards can be gigabytes
        copied += path.stat().length
        if index % progress_every == 0 or index == len(files):
            logging.info(
                "Copied %d of %d files (%.1f MB) to %s", index, len(files), copied / 1e6, target
            )
    return copied


class LocalMirror:
    """A local directory whose files are copied to `target` on `sync()`, for writers that
    can only write to a local path (TensorFlow's event files). When `target` is local, the
    directory is `target` itself and `sync()` does nothing."""

    def __init__(self, target):
        self.target = epath.Path(target)
        self.remote = is_remote(target)
        self.directory = tempfile.mkdtemp(prefix="dvd_gan_") if self.remote else os.fspath(target)
        self._synced = {}  # relative path -> (size, mtime) when last copied

    def sync(self):
        """Copies the files that changed since the last sync (whole: objects are immutable)."""
        if not self.remote:
            return
        for directory, _, files in os.walk(self.directory):
            for name in files:
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, self.directory)
                status = os.stat(path)
                if self._synced.get(relative) == (status.st_size, status.st_mtime_ns):
                    continue
                destination = self.target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "rb") as f:
                    destination.write_bytes(f.read())
                self._synced[relative] = (status.st_size, status.st_mtime_ns)

    def close(self):
        self.sync()
        if self.remote:
            shutil.rmtree(self.directory, ignore_errors=True)
