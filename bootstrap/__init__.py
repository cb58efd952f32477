"""The composition root: every process is wired here and nowhere else.

:mod:`bootstrap.services` builds what a process works with (:class:`Services`, a context
manager); :mod:`bootstrap.processes` builds each long-running process (relay, projection
consumers, command ingest, membership publisher, campaign dispatcher) for embedded and full
mode alike, :mod:`bootstrap.policy_processes` the policy runner and
:mod:`bootstrap.api_background` what ``serve`` runs beside the API. Entry points (``api.http``, ``api.cli``, ``api.bench``) only parse, call what
was built here, and render.
"""

from bootstrap.services import Services, build

__all__ = ["Services", "build"]
