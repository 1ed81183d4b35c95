"""SQLite for the embedded default: one write at a time per process, waiting in line instead of polling.

SQLite allows one writer per database file. With many request threads, each `BEGIN IMMEDIATE` that finds the
file locked is left to SQLite's busy handler, which sleeps and retries with growing pauses and no order: under a
burst some writers lose every round until the busy timeout runs out ("database is locked", an HTTP 500; issue 15
measured 267 of them at 200 participants) while the others busy-wait. Here every write transaction of the
process first takes one lock per database file (handed to its waiters in turn: no polling, no starving), and
so do single write statements outside a transaction. SQLite's busy timeout is left for what the lock cannot see:
another process (a `manage.py` command) writing to the same file.

ENGINE `oversight.ops.sqlite`; settings.py gives every SQLite configuration (SQLITE_PATH or DATABASE_URL=sqlite://)
this engine with the same options. In-memory databases (the test suite's) keep Django's behaviour.
"""

from __future__ import annotations

import threading
from collections import deque

from django.db.backends.sqlite3 import base

# Bounded, so that a leaked lock (a bug) would degrade to SQLite's own busy handling instead of hanging the
# process: past this wait the transaction goes ahead without the lock.
LOCK_WAIT_S = 60.0
_READS = ("SELECT", "PRAGMA", "EXPLAIN", "WITH", "VALUES")


class FairLock:
    """A lock handed to its waiters in the order they came. A plain Lock lets the thread that releases it take it
    straight back: a loop of short transactions (the deadline sweep, a bank import's batches) would starve the
    request threads waiting for it, and they it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Event] = deque()

    def acquire(self, timeout: float = -1) -> bool:
        with self._guard:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(None if timeout < 0 else timeout):
            return True  # handed over by release()
        with self._guard:
            if turn.is_set():
                return True  # handed over just as the wait ran out
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()  # still held: it passes straight to the next in line
            else:
                self._held = False


_locks: dict[str, FairLock] = {}
_locks_guard = threading.Lock()


def write_lock(name: str) -> FairLock:
    with _locks_guard:
        return _locks.setdefault(name, FairLock())


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
