"""One owner per data directory: the lock refuses a second holder with a message naming the first, and goes with
its holder however it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.harness.datalock import UP, DataDirBusy, DataDirLock, lock_path

REPO = Path(__file__).resolve().parents[2]


def test_a_second_holder_is_refused_naming_the_directory_and_the_first_holders_pid_and_role(tmp_path):
    with DataDirLock(tmp_path / "data").acquire(UP):
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock(tmp_path / "data").acquire("nanoclaw groups")
        assert (refused.value.pid, refused.value.role, refused.value.is_up) == (os.getpid(), UP, True)
        assert str(refused.value) == f"nanoclaw up (pid {os.getpid()}) is already running on data directory {tmp_path / 'data'}"
    with DataDirLock(tmp_path / "data").acquire("nanoclaw groups"):  # released: free again
        pass


def test_the_lock_goes_with_its_holder_even_when_it_is_killed(tmp_path):
    data = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from services.harness.datalock import DataDirLock\n"
                               f"DataDirLock({str(data)!r}).acquire('holder')\n"
                               "print('held', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirBusy, match=f"holder \\(pid {holder.pid}\\)"):
            DataDirLock(data).acquire(UP)
        holder.kill()
        holder.wait()
        with DataDirLock(data).acquire(UP):
            assert lock_path(data).read_text() == f"{os.getpid()} {UP}\n"
    finally:
        holder.kill()
        holder.wait()
