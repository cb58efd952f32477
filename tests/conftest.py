"""Every test process: a development setup, and no settings file. A
``./var/dev/clientele.env`` left by ``clientele dev up`` in the working tree would otherwise
point the tests' default settings at its servers (tests that exercise the file set
``CLIENTELE_ENV_FILE`` themselves)."""

from __future__ import annotations

import os

from hypothesis import settings

from infra import logging as infra_logging

os.environ["CLIENTELE_ENV_FILE"] = ""
# The tests run PostgreSQL and the broker as a development setup: the secrets keep their public
# development defaults (tests of the refusal outside development unset this themselves).
os.environ["CLIENTELE_ENV"] = "dev"
# Consumer-group sessions of 6 s instead of production's 10 s (tests and the processes they
# start): tansu holds each group's first join for half of it, and a killed member's partitions
# move on after it; both are waited out by every test that starts or kills a member.
os.environ["CLIENTELE_KAFKA_SESSION_TIMEOUT_MS"] = "6000"

# CLI commands run in-process configure logging. A logger cached on first use under that
# configuration keeps its processors; once a later test configures structlog anew, capture_logs
# (which edits the current processors) no longer reaches it, and tests that read captured lines
# failed or passed by the order the tests ran in. The processes the tests start cache as in
# production.
infra_logging.CACHE_LOGGERS = False

# Property tests check behaviour, not speed (speed lives in `clientele bench`): a per-example
# deadline only measures how busy the shared box is, so the suite's profile has none.
settings.register_profile("clientele", deadline=None)
settings.load_profile("clientele")
