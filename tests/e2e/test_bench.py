"""``clientele bench --quick --json`` runs to the end and prints the documented JSON shape.

No timing assertions: the numbers depend on the machine; only completeness is checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.e2e
CLIENTELE = str(Path(sys.executable).parent / "clientele")
REQUIRED = {
    "ingest": {"events_per_s", "baseline_events_per_s", "ratio", "plain_save_ratio"},
    "import": {"ratio", "rows"},
    "relay": {"events_per_s", "baseline_events_per_s", "ratio"},
    "projections": {"events_per_s", "baseline_events_per_s", "ratio"},
    "e2e_lag": {"offered_per_s", "p50_ms", "p99_ms"},
    "rebuild": {"events_per_s"},
    "reads": {"p50_ms", "p99_ms"},
    "read_throughput": {"requests_per_s", "baseline_requests_per_s", "ratio"},
    "time_travel": {"p99_ms"},
    "memory": {"peak_rss_mb", "growth_pct"},
    "growing_customer": {"ratio", "first_to_last", "visible_ratio", "last_ack_ms"},
    "cli_start": {"help_ms", "trivial_ms"},
    "analytics": {"p99_ms", "customers", "target_p99_ms"},
    "policy_lag": {"p50_ms", "p99_ms", "samples"},
    "campaign_launch": {"members_per_s", "baseline_commands_per_s", "ratio"},
}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``clientele bench --quick --json`` run, read by the tests of its report's shape."""
    return _quick_bench(tmp_path_factory.mktemp("quick"), 230)


@pytest.mark.timeout(300)  # the bench's 230 s, its 60 s to stop on SIGINT, and a margin
def test_quick_bench_emits_the_report(quick_report: dict[str, Any]) -> None:
    report = quick_report
    for scenario, keys in REQUIRED.items():
        assert keys <= set(report["scenarios"][scenario]), scenario
        for key in keys:
            assert isinstance(report["scenarios"][scenario][key], int | float), (scenario, key)
    writers = report["scenarios"]["ingest"]["writers"]  # several writer processes, by customer
    assert {"processes", "events_per_s", "ratio", "cpu_us_per_row"} <= set(writers), writers
    assert all(isinstance(writers[k], int | float) for k in ("events_per_s", "ratio")), writers


@pytest.mark.timeout(300)  # as above: the report may be made for this test
def test_relay_ratio_is_the_median_of_its_repeats(quick_report: dict[str, Any]) -> None:
    relay = quick_report["scenarios"]["relay"]  # the same relay group as ``--only relay``
    ratios = relay["repeats"]["ratio"]  # one per repeat (--quick: one), with its spread
    assert {"median", "p99", "min", "max", "n"} <= set(ratios), ratios
    assert ratios["n"] == relay["repeats"]["events_per_s"]["n"] >= 1
    assert relay["ratio"] == ratios["median"] > 0


@pytest.mark.timeout(120)
def test_fold_reports_each_read_models_cpu_per_event(tmp_path: Path) -> None:
    fold = _quick_bench(tmp_path, 110, "--only", "fold")["scenarios"]["fold"]
    assert set(fold["cpu_us_per_event"]) == {"fold", "profiles", "audit", "segments", "all"}
    assert all(micros > 0 for micros in fold["cpu_us_per_event"].values()), fold
    assert fold["events"] > 0 and fold["repeats"]["all"]["n"] >= 1
    micros = fold["cpu_us_per_event"]  # each model folds and writes; all nine do more still
    models = [micros[name] for name in ("profiles", "audit", "segments")]
    assert micros["all"] > max(models) and min(models) > micros["fold"], micros


@pytest.mark.timeout(300)
def test_rebuild_store_is_seeded_once_and_reused(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="clientele-e2e-kept-"))
    home.chmod(0o755)  # PostgreSQL runs as its own user below it
    try:
        _seeded_once_and_reused(home / "kept", tmp_path)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _seeded_once_and_reused(store: Path, tmp_path: Path) -> None:

    def rebuild() -> dict[str, Any]:
        report = _quick_bench(tmp_path, 140, "--only", "rebuild", "--rebuild-store", str(store))
        scenario: dict[str, Any] = report["scenarios"]["rebuild"]
        return scenario

    first = rebuild()
    assert first["store"] == "seeded and kept"
    assert (store / "pg" / "pgdata" / "PG_VERSION").exists()
    second = rebuild()
    assert second["store"] == "reused"
    assert second["events"] == first["events"] > 0


def _quick_bench(cwd: Path, timeout: float, *options: str) -> dict[str, Any]:
    """``clientele bench --quick --json [options]``'s report; it ran to the end, no errors.

    Past ``timeout`` the bench is interrupted (SIGINT: it stops the servers it started, as on
    Ctrl-C), then its whole process group is killed: a bench killed alone left its PostgreSQL
    cluster and ``serve`` running on the box for the rest of the suite."""
    bench = subprocess.Popen(
        [CLIENTELE, "bench", "--quick", "--json", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        bench.send_signal(signal.SIGINT)
        try:
            stdout, stderr = bench.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the group may have ended
                os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
        pytest.fail(f"the bench ran past {timeout} s: {stderr.decode(errors='replace')[-5000:]}")
    assert bench.returncode == 0, stderr.decode(errors="replace")[-5000:]
    report: dict[str, Any] = orjson.loads(stdout)
    assert report["errors"] == {}
    return report
