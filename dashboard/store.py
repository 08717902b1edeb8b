"""History in SQLite, so a restarted dashboard keeps its trends; rows older than the retention
are deleted as new ones arrive."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS polls (
    appliance TEXT NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    p50_s REAL, p95_s REAL, rate_rps REAL, error_ratio REAL,
    gpu_load REAL, temperature REAL, power_watts REAL,
    providers TEXT NOT NULL DEFAULT '{}',
    client_error_ratio REAL, auth_failure_ratio REAL
);
CREATE INDEX IF NOT EXISTS polls_by_appliance ON polls (appliance, at);
"""
COLUMNS = (
    "appliance",
    "at",
    "status",
    "reason",
    "p50_s",
    "p95_s",
    "rate_rps",
    "error_ratio",
    "gpu_load",
    "temperature",
    "power_watts",
    "providers",
    "client_error_ratio",
    "auth_failure_ratio",
)
ADDED = ("client_error_ratio REAL", "auth_failure_ratio REAL")  # columns a database of an older dashboard lacks


class Store:
    def __init__(self, path: str, retention_h: float) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(polls)")}
        for column in ADDED:  # a restarted, upgraded dashboard keeps its history
            if column.split()[0] not in present:
                self._db.execute(f"ALTER TABLE polls ADD COLUMN {column}")
        self._lock = threading.Lock()
        self._retention_s = retention_h * 3600

    def add(self, rows: list[dict[str, Any]]) -> None:
        values = [tuple(json.dumps(r[c]) if c == "providers" else r[c] for c in COLUMNS) for r in rows]
        with self._lock, self._db:
            self._db.executemany(
                f"INSERT INTO polls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", values
            )
            self._db.execute("DELETE FROM polls WHERE at < ?", (time.time() - self._retention_s,))

    def history(self, appliance: str, since_s: float) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM polls WHERE appliance = ? AND at >= ? ORDER BY at",
                (appliance, time.time() - since_s),
            )
            rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["providers"] = json.loads(row["providers"])
        return rows

    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest row of every appliance (what a restarted dashboard shows first)."""
        with self._lock:
            cursor = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM polls p WHERE at = "
                "(SELECT MAX(at) FROM polls q WHERE q.appliance = p.appliance)"
            )
            rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]
        return {r["appliance"]: {**r, "providers": json.loads(r["providers"])} for r in rows}
