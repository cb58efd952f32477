"""Issue 15 item 1: the composition root builds every process; ``Services`` is a context
manager; a process runs its background workers beside its loop and stops them in order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bootstrap import build, processes
from consumers.migrate import migrate
from consumers.status import pipeline_report
from infra.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'store.db'}", api_keys_file=tmp_path / "keys.json"
    )


def test_services_close_what_they_opened_on_leaving_the_block(tmp_path: Path) -> None:
    with build(_settings(tmp_path)) as services:
        assert services.runner is not None  # embedded mode
        migrate(services)
        services.runner.start()
        with services.store_db.transaction() as tx:  # opened on first use
            assert tx.fetchone("SELECT 1") == (1,)
        assert pipeline_report(services)["mode"] == "embedded"
    assert services.runner._thread is not None
    assert not services.runner._thread.is_alive()
    assert services._store_db is None
    services.close()  # closing again is harmless


def test_a_full_mode_process_refuses_embedded_settings(tmp_path: Path) -> None:
    with (
        build(_settings(tmp_path)) as services,
        pytest.raises(processes.NeedsKafka, match="CLIENTELE_KAFKA_BOOTSTRAP"),
        processes.relay(services),
    ):
        pass


class Recording:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls
        self.stopping = threading.Event()

    def start(self) -> None:
        self.calls.append(f"start {self.name}")

    def run(self) -> None:
        self.calls.append(f"run {self.name}")
        self.stopping.wait(10)

    def stop(self) -> None:
        self.calls.append(f"stop {self.name}")
        self.stopping.set()


@pytest.mark.parametrize("foreground", [True, False])
def test_a_process_runs_its_workers_beside_its_loop_until_stopped(foreground: bool) -> None:
    calls: list[str] = []
    loop = Recording("loop", calls) if foreground else None
    process = processes.Process(
        "test", loop, [Recording("runner", calls), Recording("publisher", calls)]
    )
    running = threading.Thread(target=process.run)
    running.start()
    for _ in range(1000):  # until both workers started (bounded)
        if len(calls) >= 2:
            break
        threading.Event().wait(0.01)
    process.stop()
    running.join(10)
    assert not running.is_alive()
    assert calls[:2] == ["start runner", "start publisher"]
    assert calls[-2:] == ["stop runner", "stop publisher"]
    assert ("run loop" in calls) is foreground
