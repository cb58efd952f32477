"""``make reliability``: >= 100 fault injections on full mode (:mod:`tests.e2e.faults`) and the
``RELIABILITY.md`` report of the run."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.faults import DRAIN_SECONDS, KINDS, RECOVER_SECONDS, Harness, harness
from tests.e2e.faults_verdict import failures, verdict_of


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def report(harness: Harness, verdict: dict[str, Any] | None, command: str, wall: float) -> str:
    """``RELIABILITY.md``: the figures of one run and the command that produced them
    (``verdict`` None: the run stopped before its checks)."""
    recovered = harness.recovered or [float("nan")]
    lines = [
        "# Reliability: fault injection on full mode",
        "",
        f"Produced by `{command}` (seed {harness.seed}) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {wall / 60:.1f} min wall; "
        "harness: `tests/e2e/faults.py` (see its docstring for what each injection does).",
        "",
        "| injections | " + " | ".join(KINDS) + " | total |",
        "|---|" + "---|" * (len(KINDS) + 1),
        "| count | "
        + " | ".join(str(harness.injected[k]) for k in KINDS)
        + f" | {sum(harness.injected.values())} |",
        "",
        "| figure | value |",
        "|---|---|",
        f"| injections not recovered from within {RECOVER_SECONDS:.0f} s | "
        f"{len(harness.unrecovered)} |",
        f"| time to recover p50 / p99 / max (s) | {percentile(recovered, 0.5):.1f} / "
        f"{percentile(recovered, 0.99):.1f} / {max(recovered):.1f} |",
    ]
    if verdict is not None:
        surfaces = verdict["by_surface"]
        lines += [
            f"| commands acknowledged | {verdict['acknowledged']} "
            f"({surfaces['http']} HTTP, {surfaces['kafka']} command topic) |",
            f"| lost | {len(verdict['lost'])} |",
            f"| duplicated | {len(verdict['duplicated'])} |",
            f"| read models differing from a rebuild | {len(verdict['unrebuilt'])} |",
            f"| membership changes recorded / missing from the topic | "
            f"{verdict['membership_recorded']} / {len(verdict['membership_missing'])} |",
            f"| consumer groups stuck | {len(verdict['stuck'])} |",
            f"| lag back to 0 after the load stopped (s; bound {DRAIN_SECONDS:.0f}) | "
            f"{verdict['drain_seconds']:.1f} |",
        ]
    lines += [
        "",
        "Time to recover: from the restart of what was killed until a new HTTP write is read "
        "back through `X-Min-Position` and a new command on `customer.commands` is answered.",
        "",
        *(f"- not recovered {line}" for line in harness.unrecovered),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=int, default=100)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--report", type=Path, default=Path("RELIABILITY.md"))
    parser.add_argument("--minutes", type=float, help="no new injection after this time")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started, then go
    os.environ |= {"CLIENTELE_ENV": "dev", "CLIENTELE_ENV_FILE": ""}  # as the tests run it
    command = f"make reliability INJECTIONS={args.injections} SEED={args.seed}"
    if args.minutes is not None:
        command += f" MINUTES={args.minutes:g}"
    started = time.monotonic()
    with harness(args.seed) as running:
        try:
            running.run(args.injections, minutes=args.minutes)
            verdict = verdict_of(running)
        except Exception as error:  # the run could not finish: say how far it got
            running.failed = True  # its logs are kept
            text = report(running, None, command, time.monotonic() - started)
            text += f"\n**The run stopped:** {error}\n"
            args.report.write_text(text)
            print(text)
            return 1
        problems = failures(verdict)
        running.failed = running.failed or bool(problems)  # its logs are kept
    text = report(running, verdict, command, time.monotonic() - started)
    if problems:
        text += "\n**Failed:** " + "; ".join(problems) + "\n"
    args.report.write_text(text)
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
