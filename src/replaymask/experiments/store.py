"""The results database: one SQLite file, one row per run, safe with concurrent writers."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from ..version import __version__

DEFAULT_DB = "replaymask.db"  # the results database when none is named
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS replaymask_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    metrics TEXT,
    accuracy_matrix TEXT,
    result TEXT,
    wall_time_s REAL,
    host TEXT,
    version TEXT,
    git_commit TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    finished_at TEXT NOT NULL
);
"""
BUSY_TIMEOUT_S = 60  # SQLite itself waits this long for a lock before giving up
BUSY_RETRIES = 3


class StoreError(Exception):
    """The database cannot be used; the message says why."""


class ResultsStore:
    """Runs keyed by the hash of their resolved config; writes are single transactions."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise StoreError(f"results database {str(self.path)!r} does not exist")
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"results database {str(self.path)!r} is a directory")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if fresh and not create:
            raise StoreError(f"results database {str(self.path)!r} is empty")
        try:
            self.connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                              isolation_level=None)
            if fresh:
                self._retry(self._create)
            else:
                self._check_ours()
            self.connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a usable replaymask results database "
                             f"({error})") from None

    def _create(self) -> None:
        try:
            self.connection.executescript(
                "BEGIN IMMEDIATE;" + SCHEMA + "INSERT OR IGNORE INTO replaymask_meta VALUES "
                f"('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
        except sqlite3.Error:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise

    def _check_ours(self) -> None:
        tables = {row[0] for row in self.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"replaymask_meta", "runs"} <= tables:
            raise StoreError(f"{self.path} is an SQLite database, but not a replaymask one")

    def _transaction(self):
        return _Transaction(self.connection)

    def _retry(self, operation):
        for attempt in range(BUSY_RETRIES):
            try:
                return operation()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise StoreError(f"{self.path}: database stayed locked; is another program holding it?")

    def record(self, config_hash: str, config: dict, result: dict | None = None,
               error: str | None = None) -> None:
        """Store a finished (``result``) or failed (``error``) run, replacing an earlier one."""
        status = "failed" if result is None else "done"
        values = (
            config_hash, json.dumps(config, sort_keys=True), status, error,
            json.dumps(result["metrics"]) if result else None,
            json.dumps(result["accuracy_matrix"]) if result else None,
            json.dumps(result) if result else None,
            result["wall_time_s"] if result else None,
            socket.gethostname(), __version__, _git_commit(),
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

        def write():
            with self._transaction():
                self.connection.execute(
                    """INSERT INTO runs (config_hash, config, status, error, metrics,
                           accuracy_matrix, result, wall_time_s, host, version, git_commit,
                           finished_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (config_hash) DO UPDATE SET
                           config = excluded.config, status = excluded.status,
                           error = excluded.error, metrics = excluded.metrics,
                           accuracy_matrix = excluded.accuracy_matrix, result = excluded.result,
                           wall_time_s = excluded.wall_time_s, host = excluded.host,
                           version = excluded.version, git_commit = excluded.git_commit,
                           finished_at = excluded.finished_at, attempts = runs.attempts + 1""",
                    values)

        self._retry(write)

    def replace_result(self, config_hash: str, result: dict) -> None:
        """Rewrite a finished run's stored result (e.g. its corrected provenance), keeping
        its key, configuration, status and history."""
        def write():
            with self._transaction():
                cursor = self.connection.execute(
                    "UPDATE runs SET result = ? WHERE config_hash = ? AND status = 'done'",
                    (json.dumps(result), config_hash))
                if cursor.rowcount != 1:
                    raise StoreError(f"{self.path}: no finished run {config_hash}")

        self._retry(write)

    def statuses(self) -> dict[str, str]:
        """config_hash -> 'done' | 'failed'."""
        return dict(self._retry(lambda: self.connection.execute(
            "SELECT config_hash, status FROM runs").fetchall()))

    def outcome(self, config_hash: str) -> tuple[str, dict | None, str | None] | None:
        """One run's (status, result, error), or None if the database does not hold it."""
        row = self._retry(lambda: self.connection.execute(
            "SELECT status, result, error FROM runs WHERE config_hash = ?",
            (config_hash,)).fetchone())
        if row is None:
            return None
        return row[0], json.loads(row[1]) if row[1] else None, row[2]

    def runs(self, status: str | None = None) -> list[dict]:
        """Every run as a dict with parsed JSON fields, oldest first."""
        query = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + \
            " ORDER BY finished_at, config_hash"
        cursor = self._retry(lambda: self.connection.execute(query, (status,) if status else ()))
        names = [column[0] for column in cursor.description]
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            for key in ("config", "metrics", "accuracy_matrix", "result"):
                row[key] = json.loads(row[key]) if row[key] else None
            rows.append(row)
        return rows

    def close(self) -> None:
        self.connection.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: the write lock is taken up front, so two writers never
    deadlock half-way; a failure rolls back."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self):
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback):
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


_GIT_COMMIT: list[str | None] = []


def _git_commit() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    if not _GIT_COMMIT:
        try:
            done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=5, cwd=Path(__file__).resolve().parent)
            _GIT_COMMIT.append(done.stdout.strip() if done.returncode == 0 else None)
        except (OSError, subprocess.SubprocessError):
            _GIT_COMMIT.append(None)
    return _GIT_COMMIT[0]
