"""SQLite for the embedded default: one write at a time per process, waiting in line instead of polling.

SQLite allows one writer per database file. With many request threads, each `BEGIN IMMEDIATE` that finds the
file locked is left to SQLite's busy handler, which sleeps and retries with growing pauses and no order: under a
burst some writers lose every round until the busy timeout runs out ("database is locked", an HTTP 500; issue 15
measured 267 of them at 200 participants) while the others busy-wait. Here every write transaction of the
process first takes one lock per database file (a `threading.Lock`: waiters are woken in turn, no polling), and
so do single write statements outside a transaction. SQLite's busy timeout is left for what the lock cannot see:
another process (a `manage.py` command) writing to the same file.

ENGINE `oversight.ops.sqlite`; settings.py gives every SQLite configuration (SQLITE_PATH or DATABASE_URL=sqlite://)
this engine with the same options. In-memory databases (the test suite's) keep Django's behaviour.
"""

from __future__ import annotations

import threading

from django.db.backends.sqlite3 import base

# Bounded, so that a leaked lock (a bug) would degrade to SQLite's own busy handling instead of hanging the
# process: past this wait the transaction goes ahead without the lock.
LOCK_WAIT_S = 60.0
_READS = ("SELECT", "PRAGMA", "EXPLAIN", "WITH", "VALUES")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._write_lock = None if self.is_in_memory_db() else write_lock(str(self.settings_dict["NAME"]))
        self._holding = False

    def acquire_write_lock(self) -> None:
        if self._write_lock is not None and not self._holding:
            self._holding = self._write_lock.acquire(timeout=LOCK_WAIT_S)

    def release_write_lock(self) -> None:
        if self._holding:
            self._holding = False
            self._write_lock.release()

    def _start_transaction_under_autocommit(self):
        self.acquire_write_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self.release_write_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self.release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self.release_write_lock()

    def _set_autocommit(self, autocommit):
        try:
            return super()._set_autocommit(autocommit)
        finally:
            if autocommit:
                self.release_write_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self.release_write_lock()

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=SerialisedCursor)
        cursor.db = self
        return cursor


class SerialisedCursor(base.SQLiteCursorWrapper):
    """A write statement outside a transaction (autocommit) takes the process's write lock for its duration."""

    db: DatabaseWrapper

    def _serialised(self, query: str) -> bool:
        db = self.db
        if db._write_lock is None or not db.autocommit or db._holding:
            return False  # in-memory, or inside a transaction (which holds the lock already)
        return not query.lstrip()[:7].upper().startswith(_READS)

    def execute(self, query, params=None):
        if not self._serialised(query):
            return super().execute(query, params)
        self.db.acquire_write_lock()
        try:
            return super().execute(query, params)
        finally:
            self.db.release_write_lock()

    def executemany(self, query, param_list):
        if not self._serialised(query):
            return super().executemany(query, param_list)
        self.db.acquire_write_lock()
        try:
            return super().executemany(query, param_list)
        finally:
            self.db.release_write_lock()
