"""Which failures while applying an event are the event's fault, and which are the machine's.

A message in the log that a projection cannot apply is *poison*: the projection skips its commit and goes on
(projections/runner.py), because the log never changes and stopping would stop every later event forever.
A failure of SQLite itself (a full disk, an I/O error, a locked or corrupt file, a missing table after a bad
migration) is *infrastructure*: skipping would lose valid events for good, so the runner stops and retries.
"""

from __future__ import annotations

import sqlite3

_INFRASTRUCTURE = (sqlite3.OperationalError, sqlite3.InternalError, MemoryError)


def is_infrastructure(exc: BaseException) -> bool:
    """True for failures of the database or the process rather than of the data: ``OperationalError``
    (disk full, I/O error, database locked, no such table/column), ``InternalError``, a bare ``DatabaseError``
    (file is not a database / malformed image) and ``MemoryError``. Data-caused SQLite errors
    (``IntegrityError``, ``DataError``, a parameter that cannot be bound) are not."""
    return isinstance(exc, _INFRASTRUCTURE) or type(exc) is sqlite3.DatabaseError
