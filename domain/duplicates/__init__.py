"""Duplicate detection: normalised match records, blocking, and a Fellegi-Sunter match model.

Pure (no I/O of ours): :mod:`.records` turns a profile into what is compared, :mod:`.compare`
puts each field of a pair on a comparison level, :mod:`.model` turns the levels into a match
probability with per-field evidence, :mod:`.blocking` finds the candidate pairs without
comparing every pair. The choice of method and libraries is docs/adr/0015-duplicate-detection.md.
"""
