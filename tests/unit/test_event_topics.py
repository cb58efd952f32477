"""Every customer event is stored under the topic ``domain.events:<class>`` wherever its class
is defined (the store's rows name it; policies select rows by it), and that topic resolves
back to the class, also in a fresh process that has not written one yet."""

from __future__ import annotations

import subprocess
import sys

from eventsourcing.utils import get_topic, resolve_topic

from domain.events import EVENT_CLASSES


def test_every_event_keeps_its_domain_events_topic() -> None:
    topics = {cls: get_topic(cls) for cls in EVENT_CLASSES}
    assert topics == {cls: f"domain.events:{cls.__name__}" for cls in EVENT_CLASSES}
    assert all(resolve_topic(topic) is cls for cls, topic in topics.items())


def test_a_stored_topic_resolves_before_any_event_was_written() -> None:
    names = [cls.__name__ for cls in EVENT_CLASSES]
    code = (
        "from eventsourcing.utils import resolve_topic\n"
        f"for name in {names!r}:\n"
        "    assert resolve_topic('domain.events:' + name).__name__ == name, name\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
