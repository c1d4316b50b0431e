"""One owner per data directory: an exclusive ``flock`` on ``<data_dir>/run/lock``.

`nanoclaw up` holds it for its whole life, and a CLI command holds it while its temporary embedded server runs
(services/cli/bus.py), so there is never more than one nats-server on a data directory's JetStream store and
never two processes writing its read models. The kernel releases the lock when its holder dies, even by
SIGKILL: a stale lock file never blocks anyone. The file records the holder's pid and what it is, for the
message the next one gets; a refused process changes nothing in the data directory.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

UP = "nanoclaw up"
"""The role `nanoclaw up` records."""


def lock_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "run" / "lock"


class DataDirBusy(Exception):
    """Another process holds the data directory's lock.

    Attributes:
        data_dir: the directory.
        pid: the holder's pid (None when it has not recorded it yet).
        role: what the holder is (``nanoclaw up``, ``nanoclaw groups``…), or "".
    """

    def __init__(self, data_dir: Path, pid: int | None, role: str):
        self.data_dir, self.pid, self.role = data_dir, pid, role
        holder = (role or "another nanoclaw process") + (f" (pid {pid})" if pid else "")
        super().__init__(f"{holder} is already running on data directory {data_dir}")

    @property
    def is_up(self) -> bool:
        return self.role == UP


class DataDirLock:
    """``DataDirLock(data_dir).acquire(role)`` … ``release()`` (also a context manager once acquired)."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir).resolve()
        self._fd: int | None = None

    def acquire(self, role: str) -> "DataDirLock":
        """Take the lock without waiting and record ``os.getpid()`` and ``role`` in the lock file.

        Raises:
            DataDirBusy: another process holds it (nothing was changed).
        """
        path = lock_path(self.data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not truncated: the holder's record stays readable
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = os.pread(fd, 200, 0).decode(errors="replace")
            os.close(fd)
            pid, _, role_held = record.strip().partition(" ")
            raise DataDirBusy(self.data_dir, int(pid) if pid.isdigit() else None, role_held) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the file releases it; the record is left, harmless)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DataDirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
