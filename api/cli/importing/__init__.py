"""Bulk import of customers and purchases from CSV or JSON Lines (``clientele import``).

:mod:`.fields` says what columns mean, :mod:`.source` checks a file whole and streams it,
:mod:`.rows` turns rows into commands, :mod:`.runner` sends them in batches through the
group-commit command service, :mod:`.journal` writes the result file and the checkpoint.
"""
