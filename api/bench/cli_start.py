"""How long a ``clientele`` call takes before it does anything: ``clientele --help`` and a
trivial command (``clientele keys list``), each a fresh process, median over the runs.

Issue 14: every call took 1.5-2.7 s while the command modules imported everything (FastAPI,
Kafka, psycopg, eventsourcing …); they now import what a command needs inside it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.bench.harness import Sizes

COMMANDS = {"help": ["--help"], "trivial": ["keys", "list"]}


def run(sizes: Sizes, say: Callable[[str], None]) -> dict[str, Any]:
    """``{"cli_start": {"help_ms", "trivial_ms", "runs", "commands"}}`` (medians, wall clock)."""
    executable = str(Path(sys.executable).parent / "clientele")
    runs = 5 * sizes.repeats
    result: dict[str, Any] = {
        "runs": runs,
        "commands": {k: " ".join(["clientele", *v]) for k, v in COMMANDS.items()},
    }
    with tempfile.TemporaryDirectory(prefix="clientele-cli-") as home:
        env = {
            **os.environ,
            "CLIENTELE_API_KEYS_FILE": str(Path(home) / "keys.json"),
            "CLIENTELE_ENV_FILE": "",
        }
        for name, args in COMMANDS.items():
            say(f"cli: {runs} x clientele {' '.join(args)} …")
            _start(executable, args, env, home)  # warm the file cache
            times = [_start(executable, args, env, home) for _ in range(runs)]
            result[f"{name}_ms"] = round(statistics.median(times), 1)
            result[f"{name}_min_ms"] = round(min(times), 1)
    return {"cli_start": result}


def _start(executable: str, args: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [executable, *args], env=env, cwd=cwd, capture_output=True, check=True, timeout=60
    )
    return (time.perf_counter() - started) * 1000
