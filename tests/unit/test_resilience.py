"""The one retry loop (infra.resilience): which errors are outages, and how they are waited
out — two log lines per outage, a fatal error ends the loop, a stop ends the wait."""

from __future__ import annotations

import sqlite3
import threading
import time

import eventsourcing.persistence as es
import psycopg
import pytest
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from prometheus_client import REGISTRY
from psycopg_pool import PoolTimeout
from structlog.testing import capture_logs

from infra.kafka_producer import FlushTimedOut
from infra.resilience import (
    DATABASE,
    KAFKA,
    Backoff,
    Stopped,
    Supervisor,
    dependency,
    fatal,
    transient,
)
from infra.settings import ConfigurationError

QUICK = Backoff(initial=0.001, maximum=0.01)


def wrapped(error: Exception) -> Exception:
    """``error`` as a library re-raises it (``raise … from``)."""
    try:
        try:
            raise error
        except Exception as cause:
            raise RuntimeError("while reading") from cause
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), DATABASE),
        (PoolTimeout("couldn't get a connection after 3.00 sec"), DATABASE),
        (psycopg.InterfaceError("the connection is closed"), DATABASE),
        (es.OperationalError("connection refused"), DATABASE),
        (sqlite3.OperationalError("database is locked"), DATABASE),
        (KafkaConnectionError("no broker"), KAFKA),
        (KafkaTimeoutError("metadata"), KAFKA),
        (FlushTimedOut("flush not done within 30.0 s"), KAFKA),  # the batch is retried
        (ConnectionResetError(), "network"),
        (wrapped(psycopg.OperationalError("gone")), DATABASE),
        (sqlite3.OperationalError("no such table: x"), None),
        (UnsupportedVersionError(), None),
        (ValueError("bad data"), None),
        (TopicAuthorizationFailedError(), None),
    ],
)
def test_errors_are_classified_by_the_dependency_that_is_away(
    error: Exception, expected: str | None
) -> None:
    assert dependency(error) == expected
    assert transient(error) is (expected is not None)


def test_configuration_and_authorisation_errors_are_fatal() -> None:
    assert fatal(ConfigurationError("set CLIENTELE_KAFKA_BOOTSTRAP"))
    assert fatal(wrapped(TopicAuthorizationFailedError()))
    assert not fatal(psycopg.OperationalError("gone"))
    assert not fatal(ValueError("a defect"))


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("clientele_dependency_up", {"dependency": name})


def test_an_outage_is_waited_out_with_one_line_when_it_starts_and_one_when_it_ends() -> None:
    failures = iter([psycopg.OperationalError("refused")] * 5)
    recovered: list[int] = []

    def step() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "done"

    supervisor = Supervisor(
        "test", threading.Event(), recover=lambda: recovered.append(1), backoff=QUICK
    )
    with capture_logs() as logs:
        assert supervisor.call(step) == "done"
    said = [(e["event"], e["log_level"]) for e in logs if e["log_level"] != "debug"]
    assert said == [("outage.waiting", "warning"), ("outage.ended", "info")]
    assert logs[0]["error"] == "OperationalError: refused"
    assert logs[-1]["waited_seconds"] >= 0 and logs[-1]["attempts"] == 6
    assert len(recovered) == 5  # before each new attempt
    assert gauge(DATABASE) == 1.0
    assert [e["dependency"] for e in logs if e["log_level"] != "debug"] == [DATABASE] * 2


def test_the_dependency_gauge_is_down_while_waiting() -> None:
    stopping = threading.Event()
    seen: list[float | None] = []

    def step() -> None:
        seen.append(gauge(KAFKA))
        if len(seen) == 3:
            stopping.set()
        raise KafkaConnectionError("broker away")

    with pytest.raises(Stopped):
        Supervisor("test", stopping, backoff=QUICK).call(step)
    assert seen[1:] == [0.0, 0.0]


def test_a_defect_is_logged_with_its_traceback_and_retried() -> None:
    calls: list[int] = []

    def step() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("a bug")
        return len(calls)

    with capture_logs() as logs:
        assert Supervisor("test", threading.Event(), backoff=QUICK).call(step) == 3
    failed = [e for e in logs if e["event"] == "process.step_failed"]
    assert len(failed) == 2  # the traceback as text: never exc_info (frames' locals rendered)
    assert all("KeyError: 'a bug'" in e["exception"] and "exc_info" not in e for e in failed)
    assert logs[-1]["event"] == "process.step_recovered"


def test_a_fatal_error_ends_the_loop_at_once() -> None:
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise ConfigurationError("no broker configured")

    with pytest.raises(ConfigurationError):
        Supervisor("test", threading.Event(), backoff=QUICK).run(step)
    assert calls == [1]


def test_at_start_up_only_outages_are_waited_for() -> None:
    with pytest.raises(ValueError, match="scheme"):
        Supervisor("start-up", threading.Event(), only_transient=True, backoff=QUICK).call(
            lambda: (_ for _ in ()).throw(ValueError("unsupported URL scheme"))
        )


def test_a_stop_ends_the_wait_at_once() -> None:
    stopping = threading.Event()

    def step() -> None:
        raise psycopg.OperationalError("refused")

    supervisor = Supervisor("test", stopping, backoff=Backoff(initial=30.0, maximum=60.0))
    threading.Timer(0.2, stopping.set).start()
    started = time.monotonic()
    supervisor.run(step)  # returns: stopped while waiting
    assert time.monotonic() - started < 5


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    wait = Backoff(initial=0.5, maximum=5.0).wait()

    class State:
        def __init__(self, attempt: int) -> None:
            self.attempt_number = attempt

    waits = [wait(State(n)) for n in range(1, 12)]  # type: ignore[arg-type]
    assert 0.5 <= waits[0] <= 1.0
    assert waits[2] >= 2.0
    assert all(w <= 5.0 for w in waits)
    assert len({round(w, 6) for w in waits[:3]}) == 3
