"""schemathesis against the served OpenAPI: no 5xx, responses match the documented schema and
status codes, for every route, with an admin key (so auth does not hide the handlers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Server

ST = str(Path(sys.executable).parent / "st")
EXAMPLES_PER_OPERATION = int(os.environ.get("CLIENTELE_SCHEMATHESIS_EXAMPLES", "60"))


def test_openapi_contract_holds_under_generated_requests(
    embedded_server: Server, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            ST,
            "run",
            f"{embedded_server.base_url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
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
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    (tmp_path / "st.log").write_text(output)
    assert done.returncode == 0, output[-6000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None and int(generated.group(1)) >= 1000, output[-2000:]
