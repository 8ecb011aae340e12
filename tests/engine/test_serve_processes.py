"""Detached servers: a server that cannot start says why (from its log), and is not listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import RunError
from engine.serve.processes import ServerManager


@pytest.mark.slow
def test_a_server_that_cannot_start_reports_its_error_and_is_not_listed(tmp_path: Path) -> None:
    broken = tmp_path / "step_000001.pt"
    broken.write_bytes(b"not a checkpoint")
    manager = ServerManager(tmp_path / "servers")
    info = manager.start(broken, model_name="broken")
    with pytest.raises(RunError, match="did not start: .*not a readable checkpoint") as caught:
        manager.wait_ready(info.name, timeout=60)
    assert "server.log" in caught.value.hint
    assert manager.list() == []
    assert manager.get(info.name).state == "failed"
    manager.stop(info.name)  # stopping a server that is gone is not an error


def test_records_of_ended_servers_are_pruned_and_live_ones_kept(tmp_path: Path) -> None:
    import os

    from engine.runs.process import process_started_at
    from engine.serve.server import write_record

    manager = ServerManager(tmp_path / "servers")
    for index in range(5):
        write_record(manager.root / f"old-{index}", state="stopped", launched_at=float(index))
    write_record(manager.root / "live", state="running", launched_at=0.0, pid=os.getpid(),
                 pid_started_at=process_started_at(os.getpid()), url="http://127.0.0.1:1/v1")
    manager.prune(keep=2)
    assert sorted(p.name for p in manager.root.iterdir()) == ["live", "old-3", "old-4"]
    assert [info.name for info in manager.list()] == ["live"]
