"""schemathesis against the served OpenAPI: no 5xx, responses match the documented schema and
status codes, for every route, with an admin key (so auth does not hide the handlers).

All four phases run: first the stateful phase, which follows the document's links
(:mod:`api.http.links`) from the operations that create things through those that use their
ids (starting there: ``schemathesis_hooks``), then examples, coverage and fuzzing.
``CLIENTELE_SCHEMATHESIS_EXAMPLES`` sets the examples per operation, and eight times as many
stateful scenarios (CI: 15; a full run: 60 or more; README "Tests")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

ST = str(Path(sys.executable).parent / "st")
ROOT = Path(__file__).parents[2]
EXAMPLES_PER_OPERATION = int(os.environ.get("CLIENTELE_SCHEMATHESIS_EXAMPLES", "15"))
CONFIG = """
# The stateful phase sends schema-valid data only (invalid input is the other phases' job: a
# refused first step ends a sequence before it reaches what the links lead to), and strings
# often from values the domain accepts somewhere (names, channels, stages, purposes, tags).
[dictionaries.domain]
values = ["Ada Lovelace", "email", "phone", "inbound", "outbound", "active", "loyal",
          "email_marketing", "profiling", "vip", "gold", "A-1001", "EUR", "12.50", "moved"]

[phases.stateful]
max-steps = 20

[phases.stateful.generation]
mode = "positive"
max-examples = {scenarios}
dictionaries = {{ string = {{ dictionary = "domain", probability = 0.8 }} }}
"""
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def _st(server: Server, tmp_path: Path, phases: str) -> tuple[str, int]:
    """Run ``st`` with ``phases`` against ``server``; (its output, the cases it generated).
    The stateful phase runs on its own, first: after the others, their verdicts (operations
    that answered 404 to random ids) left it a fifth of its scenarios, and the keys and
    emails they had used refused most registrations."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(scenarios=8 * EXAMPLES_PER_OPERATION))
    done = subprocess.run(
        [
            ST,
            "--config-file",
            str(config),
            "run",
            f"{server.base_url}/openapi.json",
            "--phases",
            phases,
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--header",
            f"Authorization: Bearer {server.tokens['admin']}",
            "--seed",
            "20261123",
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=120 + 30 * EXAMPLES_PER_OPERATION,
        check=False,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
        },
    )
    output = done.stdout + done.stderr
    (tmp_path / f"st-{phases.replace(',', '-')}.log").write_text(output)
    assert done.returncode == 0, output[-6000:]
    assert "Unresolvable references" not in output, output[-3000:]  # every $ref resolves
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None, output[-2000:]
    return output, int(generated.group(1))


@pytest.mark.timeout(300 + 60 * EXAMPLES_PER_OPERATION)
def test_openapi_contract_holds_under_generated_requests(
    embedded_server: Server, tmp_path: Path
) -> None:
    output, stateful = _st(embedded_server, tmp_path, "stateful")  # first: a fresh store
    _, single = _st(embedded_server, tmp_path, "examples,coverage,fuzzing")
    links = re.search(r"✅  Stateful.*?API Links:\s+(\d+) covered / (\d+) selected", output, re.S)
    assert links is not None, output[-3000:]  # the stateful phase ran and passed
    covered, selected = int(links.group(1)), int(links.group(2))
    print(
        f"schemathesis: {single + stateful} cases ({stateful} stateful), "
        f"links {covered} covered of {selected}"
    )
    assert single + stateful >= 500 and stateful >= 200, output[-2000:]
    assert covered >= 25, output[-3000:]
