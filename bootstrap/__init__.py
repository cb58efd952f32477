"""The composition root: every process is wired here and nowhere else.

:mod:`bootstrap.services` builds what a process works with (:class:`Services`, a context
manager); :mod:`bootstrap.processes` builds each long-running process (relay, projection
consumers, command ingest, membership publisher, the API's background work) for embedded and
full mode alike. Entry points (``api.http``, ``api.cli``, ``api.bench``) only parse, call what
was built here, and render.
"""

from bootstrap.services import Services, build

__all__ = ["Services", "build"]
