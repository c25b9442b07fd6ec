"""The run lock: one search session at a time in a run directory."""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for one search session: a second ``search`` of the same run fails with a
    ConfigError instead of interleaving its trials (and its journal appends) with the first."""
    path = Path(run_dir) / ".search.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise ConfigError(f"run directory {str(run_dir)!r}: being searched right now by {owner}; "
                              "wait for it, or give --name for a new run") from None
        f.seek(0)
        f.truncate()
        f.write(f"mrla-nas pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
