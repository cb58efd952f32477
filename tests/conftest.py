"""Every test process: no settings file. A ``./var/dev/clientele.env`` left by ``clientele dev
up`` in the working tree would otherwise point the tests' default settings at its servers
(tests that exercise the file set ``CLIENTELE_ENV_FILE`` themselves)."""

from __future__ import annotations

import os

os.environ["CLIENTELE_ENV_FILE"] = ""
