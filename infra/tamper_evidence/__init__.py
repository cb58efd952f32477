"""Tamper evidence of the event store, in one place.

* :mod:`.chain`: the hash-chain math (every stored event linked to the previous one of its
  aggregate; the links are written by the recorders, :mod:`infra.backends`, in the events'
  transaction) and the ``event_hashes`` table;
* :mod:`.seals`: signed seals of the chain heads (``audit_seals``), and verification of every
  chain and seal;
* :mod:`.export`: the JSONL export of the stored events with their links and the seals;
* :mod:`.offline_verify`: a standard-library-only script a third party runs on an export.
"""
