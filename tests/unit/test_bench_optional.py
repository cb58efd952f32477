"""Issue 15 item 2: the benchmark suite is loaded only by ``clientele bench``, with its own
optional dependencies (the ``bench`` extra); the runtime needs none of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WITHOUT_PSUTIL = """
import sys
sys.modules["psutil"] = None  # as if the bench extra were not installed
from typer.testing import CliRunner
from api.cli import app
result = CliRunner().invoke(app, ["bench", "--quick"])
print(result.exit_code)
print(result.output)
print("api.bench.harness" in sys.modules)
"""

SERVE_IMPORTS = """
import sys
import api.http.app, api.cli, bootstrap.processes, bootstrap.policy_processes
print(" ".join(sorted(m for m in ("psutil", "httpx", "api.bench") if m in sys.modules)))
"""


def _run(code: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parents[2],
        env={"CLIENTELE_API_KEYS_FILE": str(tmp_path / "keys.json"), "PATH": "/usr/bin:/bin"},
    )
    return done.stdout.splitlines()


def test_bench_without_its_extra_says_how_to_get_it(tmp_path: Path) -> None:
    exit_code, *output, loaded = _run(WITHOUT_PSUTIL, tmp_path)
    text = " ".join(output)
    assert exit_code == "2"
    assert "psutil is missing" in text
    assert "pip install 'clientele[bench]'" in text
    assert loaded == "False"


def test_the_runtime_loads_no_bench_dependency(tmp_path: Path) -> None:
    assert _run(SERVE_IMPORTS, tmp_path) == [""]
