"""HTTP GET load from wrk, a compiled generator (Debian's ``wrk``), so the load generator does
not compete in Python with the server it measures for the same two cores.

``make bench-tools`` installs it; without it the scenarios that need it fail with
:class:`WrkUnavailable`, which says so. The request script is ``wrk_load.lua`` beside this file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from api.bench.harness import summary
from infra.local_services import LOOPBACK

SCRIPT = Path(__file__).with_name("wrk_load.lua")
MARKER = "WRK-RESULT "
INSTALL_HINT = "install it with `make bench-tools` (Debian: apt-get install -y wrk)"


class WrkUnavailable(RuntimeError):
    """wrk is not installed, or it failed or printed no result."""


def wrk_binary() -> str:
    """The path of ``wrk``; :class:`WrkUnavailable` naming how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise WrkUnavailable(
            f"the HTTP read scenarios need wrk, which is not on PATH: {INSTALL_HINT}"
        )
    return found


def get_load(
    port: int,
    token: str,
    paths: Sequence[str],
    *,
    seconds: float,
    connections: int,
    rate: float = 0.0,
) -> dict[str, Any]:
    """GET a random one of ``paths`` on ``127.0.0.1:port`` for ``seconds``, over
    ``connections`` keep-alive connections (one wrk thread each).

    ``rate`` > 0: that many requests/s in all, each connection on its own schedule; a latency
    counts from the scheduled time (no coordinated omission). ``rate`` 0: closed loop, as fast
    as the server answers. Returns ``requests_per_s`` (answered with status < 400),
    ``failures`` (status ≥ 400 or socket errors) and ``latency_ms`` (:func:`summary`).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as listing:
        listing.write("\n".join(paths) + "\n")
    env = {
        **os.environ,
        "BENCH_PATHS": listing.name,
        "BENCH_TOKEN": token,
        "BENCH_RATE": str(rate),
        "BENCH_THREADS": str(connections),
    }
    command = [
        wrk_binary(),
        f"--threads={connections}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=30s",
        f"--script={SCRIPT}",
        f"http://{LOOPBACK}:{port}/",
    ]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    finally:
        Path(listing.name).unlink(missing_ok=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise WrkUnavailable(
            f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}"
        )
    result = orjson.loads(lines[-1].removeprefix(MARKER))
    latencies = [value / 1000 for value in result["latencies_us"]]
    duration = result["duration_us"] / 1e6
    return {
        "offered_per_s": rate or None,
        "requests_per_s": len(latencies) / duration,
        "connections": connections,
        "seconds": duration,
        "failures": result["failures"] + result["socket_errors"],
        "latency_ms": summary(latencies),
    }
