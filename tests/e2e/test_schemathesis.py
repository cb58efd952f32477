"""schemathesis against the served OpenAPI: no 5xx, responses match the documented schema and
status codes, for every route, with an admin key (so auth does not hide the handlers).

All four phases run: examples, coverage, fuzzing and the stateful phase, which follows the
document's links (:mod:`api.http.links`) from the operations that create things through those
that use their ids (starting there: ``schemathesis_hooks``). ``CLIENTELE_SCHEMATHESIS_EXAMPLES``
sets the examples per operation, and eight times as many stateful scenarios (CI: 15; a full
run: 60 or more; README "Tests")."""

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
inference = {{ algorithms = [] }}  # the document's links only: inferred ones thin them out

[phases.stateful.generation]
mode = "positive"
max-examples = {scenarios}
dictionaries = {{ string = {{ dictionary = "domain", probability = 0.8 }} }}
"""
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


@pytest.mark.timeout(300 + 60 * EXAMPLES_PER_OPERATION)
def test_openapi_contract_holds_under_generated_requests(
    embedded_server: Server, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(scenarios=8 * EXAMPLES_PER_OPERATION))
    done = subprocess.run(
        [
            ST,
            "--config-file",
            str(config),
            "run",
            f"{embedded_server.base_url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--header",
            f"Authorization: Bearer {embedded_server.tokens['admin']}",
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
        timeout=240 + 60 * EXAMPLES_PER_OPERATION,
        check=False,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
        },
    )
    output = done.stdout + done.stderr
    (tmp_path / "st.log").write_text(output)
    assert done.returncode == 0, output[-6000:]
    assert "Unresolvable references" not in output, output[-3000:]  # every $ref resolves
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None and int(generated.group(1)) >= 500, output[-2000:]
    stateful = re.search(
        r"✅  Stateful.*?API Links:\s+(\d+) covered / (\d+) selected", output, re.S
    )
    assert stateful is not None, output[-3000:]  # the stateful phase ran and passed
    covered, selected = int(stateful.group(1)), int(stateful.group(2))
    print(f"schemathesis: {generated.group(1)} cases, links {covered} covered of {selected}")
    assert covered >= 20, output[-3000:]
