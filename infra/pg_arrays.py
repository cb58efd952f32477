"""One-dimensional PostgreSQL arrays sent in binary, packed in one go.

psycopg dumps a ``list`` parameter element by element in Python (``ListBinaryDumper``: a
dumper looked up and called per value, then the pieces joined). The write path sends about
a dozen such arrays of 500 values per batch (the events' columns, their conflict check,
hash links and heads, the prefetch's ids and versions). Wrapping a column in one of the
lists below sends the same bytes (PostgreSQL's ``array_send`` form: one dimension, lower
bound 1, no NULLs), packed by ``struct`` and ``bytes.join`` in C. The wrapped values must
be of the one type the class names, never None; text must hold no NUL (the server refuses
it), as psycopg's own dumpers require.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEADER = struct.Struct(">iiiii")  # dimensions, has NULLs, element oid, length, lower bound
_EMPTY = struct.Struct(">iii")  # no dimension: dimensions, has NULLs, element oid
_SIZE = struct.Struct(">i")
_UUID_SIZE, _BIGINT_SIZE = _SIZE.pack(16), _SIZE.pack(8)


class Packed(list[Any]):
    """A column of one element type, dumped as its binary array (:class:`_PackedDumper`)."""

    ELEMENT_OID: ClassVar[int]
    ARRAY_OID: ClassVar[int]

    def pack(self, encoding: str = "utf-8") -> bytes:
        """The array's binary form (``array_send``); text in the connection's ``encoding``."""
        if not self:
            return _EMPTY.pack(0, 0, self.ELEMENT_OID)
        return _HEADER.pack(1, 0, self.ELEMENT_OID, len(self), 1) + self._elements(encoding)

    def _elements(self, encoding: str) -> bytes:
        raise NotImplementedError


class Uuids(Packed):
    """``uuid[]`` from ``uuid.UUID`` values."""

    ELEMENT_OID, ARRAY_OID = 2950, 2951

    def _elements(self, _encoding: str) -> bytes:
        return b"".join([_UUID_SIZE + value.bytes for value in self])


class Bigints(Packed):
    """``bigint[]`` from ``int`` values."""

    ELEMENT_OID, ARRAY_OID = 20, 1016

    def _elements(self, _encoding: str) -> bytes:
        return b"".join([_BIGINT_SIZE + value.to_bytes(8, "big", signed=True) for value in self])


class Texts(Packed):
    """``text[]`` from ``str`` values (in the connection's encoding, as psycopg's own)."""

    ELEMENT_OID, ARRAY_OID = 25, 1009

    def _elements(self, encoding: str) -> bytes:
        return _lengths_and_bytes([value.encode(encoding) for value in self])


class Byteas(Packed):
    """``bytea[]`` from ``bytes`` values."""

    ELEMENT_OID, ARRAY_OID = 17, 1001

    def _elements(self, _encoding: str) -> bytes:
        return _lengths_and_bytes(self)


def _lengths_and_bytes(values: list[bytes]) -> bytes:
    return b"".join([_SIZE.pack(len(value)) + value for value in values])


class _PackedDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Packed) -> bytes:
        connection = self.connection
        return obj.pack(connection.info.encoding if connection is not None else "utf-8")


for _cls in (Uuids, Bigints, Texts, Byteas):
    _dumper = type(f"{_cls.__name__}Dumper", (_PackedDumper,), {"oid": _cls.ARRAY_OID})
    psycopg.adapters.register_dumper(_cls, _dumper)
