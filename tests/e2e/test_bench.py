"""``clientele bench --quick --json`` runs to the end and prints the documented JSON shape.

No timing assertions: the numbers depend on the machine; only completeness is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


@pytest.mark.timeout(240)
def test_quick_bench_emits_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [CLIENTELE, "bench", "--quick", "--json"],
        capture_output=True,
        timeout=230,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-5000:]
    report = orjson.loads(done.stdout)
    assert report["errors"] == {}
    for scenario, keys in REQUIRED.items():
        assert keys <= set(report["scenarios"][scenario]), scenario
        for key in keys:
            assert isinstance(report["scenarios"][scenario][key], int | float), (scenario, key)
    writers = report["scenarios"]["ingest"]["writers"]  # several writer processes, by customer
    assert {"processes", "events_per_s", "ratio", "cpu_us_per_row"} <= set(writers), writers
    assert all(isinstance(writers[k], int | float) for k in ("events_per_s", "ratio")), writers
