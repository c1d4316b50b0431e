"""How CLI commands reach the bus without `up`: a temporary server of their own, only on a data directory nobody
else holds (never a second server on a store)."""

from __future__ import annotations

import pytest

from services.cli.bus import bus
from services.harness.config import Credentials
from services.harness.connect import NatsUnavailable
from services.harness.datalock import UP, DataDirBusy, DataDirLock
from tests.bus import settings
from tests.cli.up_process import servers_on


async def test_a_command_while_up_holds_the_data_directory_but_its_server_does_not_answer_says_the_bus_is_starting(tmp_path):
    s = settings(tmp_path)
    with DataDirLock(s.data_dir).acquire(UP):  # `up` between taking the lock and writing its run file
        for start_embedded in (True, False):
            with pytest.raises(NatsUnavailable, match=r"the bus is starting .*nanoclaw up \(pid \d+\).*try again"):
                async with bus(s, Credentials(), name="nanoclaw-groups", start_embedded=start_embedded):
                    pass
    assert not (tmp_path / "data" / "nats").exists() and servers_on(tmp_path / "data" / "nats") == []


async def test_a_commands_temporary_server_holds_the_data_directory_until_it_is_stopped(tmp_path):
    s = settings(tmp_path)
    async with bus(s, Credentials(), name="nanoclaw-groups"):
        assert len(servers_on(tmp_path / "data" / "nats")) == 1
        with pytest.raises(DataDirBusy, match="nanoclaw-groups"):
            DataDirLock(s.data_dir).acquire(UP)
        with pytest.raises(NatsUnavailable, match="nanoclaw-groups.*try again when it has finished"):
            async with bus(s, Credentials(), name="nanoclaw-tasks"):
                pass
    assert servers_on(tmp_path / "data" / "nats") == []
    with DataDirLock(s.data_dir).acquire(UP):
        pass
