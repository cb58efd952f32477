"""What the fault-injection harness (:mod:`tests.e2e.faults`) records when a run fails, so the
failure explains itself from its kept log directory: a py-spy dump of every process, the
command ingest's consumer group as the broker has it (members and their assignment, committed
offsets with their metadata, beginning and end offsets per partition, the topic's id), and
what ``clientele consumers status`` and ``clientele projections status`` say (the projection
groups' stored offsets against the topic, the relay's and read models' lag)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from infra.kafka_topics import TopicInspector

INGEST_GROUP = "clientele-ingest"  # bootstrap.processes.build_ingest's group


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter (the venv's; None: not installed)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def stack_dump(pid: int) -> str:
    """``py-spy dump`` of the process ``pid`` (every thread's stack), or why there is none."""
    executable = py_spy()
    if executable is None:
        return "py-spy is not installed"
    try:
        done = subprocess.run(
            [executable, "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "py-spy dump timed out after 60 s"
    return done.stdout + done.stderr


def group_state(bootstrap: str, group: str, topic: str) -> str:
    """``group`` on ``topic`` as the broker at ``bootstrap`` has it, one line per fact:
    the topic's id and partitions, each member's assignment, and per partition its committed
    offset (with metadata), beginning and end offset. Errors are written, not raised."""
    lines: list[str] = []
    try:
        inspector = TopicInspector(bootstrap, request_timeout_ms=10_000)
    except Exception as error:  # the broker does not answer: say so
        return f"no admin client: {error!r}"
    try:
        state = inspector.state(topic)
        lines.append(f"topic {topic}: {state.to_dict()}")
        partitions = [TopicPartition(topic, p) for p in sorted(state.end_offsets)]
        lines += _members(inspector, group)
        committed = _committed(inspector, group)
        earliest = {tp: OffsetSpec.EARLIEST for tp in partitions}
        begins = inspector.admin.list_partition_offsets(earliest) if partitions else {}
        for tp in sorted({*partitions, *committed}, key=lambda tp: (tp.topic, tp.partition)):
            begin = begins.get(tp)
            lines.append(
                f"partition {tp.topic}:{tp.partition} committed {committed.get(tp)} "
                f"beginning {None if begin is None else begin.offset} "
                f"end {state.end_offsets.get(tp.partition) if tp.topic == topic else '?'}"
            )
    except Exception as error:  # whatever it could not learn is said
        lines.append(f"stopped: {error!r}")
    finally:
        inspector.close()
    return "\n".join(lines)


def _members(inspector: TopicInspector, group: str) -> list[str]:
    try:
        described: dict[str, Any] = inspector.admin.describe_groups([group]).get(group, {})
    except Exception as error:  # ValueError: kafka-python on some of tansu's replies
        return [f"group {group}: not described ({error!r})"]
    lines = [f"group {group}: state {described.get('group_state')} error {described.get('error')}"]
    for member in described.get("members") or []:
        lines.append(
            f"  member {member.get('member_id')} ({member.get('client_host')}): "
            f"assignment {member.get('member_assignment')}"
        )
    return lines


def _committed(inspector: TopicInspector, group: str) -> dict[TopicPartition, Any]:
    found: dict[str, dict[TopicPartition, Any]] = inspector.admin.list_group_offsets(group)
    return found.get(group, {})


def cli_output(env: dict[str, str], *args: str) -> str:
    """What ``clientele *args`` prints with ``env`` (stdout and stderr), or why nothing."""
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "clientele"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timed out after 60 s"
    return f"(exit {done.returncode})\n{done.stdout}{done.stderr}"


def record_state(
    home: Path, bootstrap: str, commands_topic: str, pids: dict[str, int], env: dict[str, str]
) -> Path:
    """Write the stacks of ``pids`` (name -> pid), the ingest group's state on
    ``commands_topic`` and the pipeline's status (clientele run with ``env``) to a new
    ``state-<UTC time>.txt`` under ``home``; its path."""
    out = home / f"state-{time.strftime('%H%M%S', time.gmtime())}.txt"
    sections = [f"# recorded {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"]
    for name, pid in pids.items():
        sections.append(f"## {name} (pid {pid}): py-spy dump\n{stack_dump(pid)}")
    sections.append(
        f"## ingest group {INGEST_GROUP}\n{group_state(bootstrap, INGEST_GROUP, commands_topic)}"
    )
    for command in (("consumers", "status"), ("projections", "status")):
        sections.append(f"## clientele {' '.join(command)}\n{cli_output(env, *command)}")
    out.write_text("\n\n".join(sections) + "\n")
    return out
