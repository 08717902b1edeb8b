"""Galleries: named sets of enrolled subjects and their face embeddings, searched 1:N.

SQLite holds them (one file on the appliance's persistent volume, WAL mode so a search never
waits for a write), and each process keeps one float32 matrix of unit embeddings per gallery
for search. Every write bumps the gallery's version; before a search a process compares the
version of its matrix with the file's, so gunicorn workers, and the `facefleet gallery import`
run by Ansible, stay in step without talking to each other. A write is one transaction and a
matrix is swapped whole, so a search sees the gallery before or after a write, never a mix.

Embeddings are tagged with the recognizer's name and sha256: a gallery is only ever searched
with embeddings of the model that made it.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facefleet.errors import FacefleetError
from facefleet.galleries.coarse import CANDIDATES, MIN_ROWS, CoarseIndex

# Also the OpenAPI pattern (ECMA regex); checked with fullmatch, since re's `$` also matches before a final newline
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SUBJECT_LENGTH = 128

SCHEMA = """
CREATE TABLE IF NOT EXISTS galleries (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    recognizer TEXT NOT NULL,
    recognizer_sha256 TEXT NOT NULL,
    dim INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    checksum TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS subjects (
    gallery TEXT NOT NULL REFERENCES galleries(name) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (gallery, subject)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    gallery TEXT NOT NULL,
    subject TEXT NOT NULL,
    embedding BLOB NOT NULL,
    FOREIGN KEY (gallery, subject) REFERENCES subjects(gallery, subject) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces(gallery, subject);
"""


class GalleryError(FacefleetError):
    """A gallery request that cannot be done; `status` is the HTTP answer it maps to."""

    code = "gallery_error"

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Recognizer:
    """The model a gallery's embeddings come from: only its own embeddings may be compared."""

    name: str
    sha256: str
    dim: int


@dataclass(frozen=True)
class Index:
    """One gallery as searched: unit rows grouped by subject, and where each subject starts."""

    version: int
    subjects: list[str]
    starts: np.ndarray  # first row of each subject
    matrix: np.ndarray  # rows x dim, float32, unit length
    coarse: CoarseIndex | None = None  # int8 pre-selection, for large galleries

    def search(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[tuple[str, float]]]:
        """For each query, up to top_k (subject, score) at or above threshold, best first; a
        subject scores its best face."""
        if not self.subjects or not len(queries):
            return [[] for _ in range(len(queries))]
        if self.coarse is not None:
            return self._preselected(queries, top_k, threshold)
        return self._exact(queries, top_k, threshold)

    def _preselected(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[tuple[str, float]]]:
        """Candidates from the int8 copy, scored exactly: the float32 matrix is read for them only."""
        assert self.coarse is not None
        out = []
        for query, rows in zip(queries, self.coarse.candidates(queries, max(CANDIDATES, 4 * top_k)), strict=True):
            owners = np.searchsorted(self.starts, rows, side="right") - 1
            best: dict[int, float] = {}
            for owner, score in zip(owners.tolist(), (self.matrix[rows] @ query).tolist(), strict=True):
                best[owner] = max(score, best.get(owner, -2.0))
            ranked = sorted(best.items(), key=lambda item: -item[1])[:top_k]
            out.append([(self.subjects[o], round(s, 5)) for o, s in ranked if s >= threshold])
        return out

    def _exact(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[tuple[str, float]]]:
        scores = queries @ self.matrix.T
        if len(self.starts) != len(self.matrix):
            scores = np.maximum.reduceat(scores, self.starts, axis=1)
        k = min(top_k, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out = []
        for row, picks in zip(scores, best, strict=True):
            ranked = sorted(((float(row[i]), int(i)) for i in picks), reverse=True)
            out.append([(self.subjects[i], round(s, 5)) for s, i in ranked if s >= threshold])
        return out


def unit_rows(embeddings: np.ndarray | Sequence[Sequence[float]], dim: int) -> np.ndarray:
    """float32 rows of length one; a wrong width or a zero vector is the caller's error."""
    rows = np.asarray(embeddings, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise GalleryError(
            f"embeddings must be lists of {dim} numbers (this appliance's recognizer)", 400, "bad_embedding"
        )
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not np.all(np.isfinite(rows)) or np.any(norms == 0):
        raise GalleryError("embeddings must be finite and not all zero", 400, "bad_embedding")
    return rows / norms


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise GalleryError("a gallery name is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter/digit")
    return name


def check_subject(subject: Any) -> str:
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_LENGTH:
        raise GalleryError(f"a subject id is a non-empty string of at most {MAX_SUBJECT_LENGTH} characters")
    if "/" in subject or any(ord(c) < 32 or ord(c) == 127 for c in subject):
        raise GalleryError("a subject id must not contain '/' or control characters")
    try:
        subject.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): JSON lets it through, SQLite cannot store it
        raise GalleryError("a subject id must be valid Unicode text (it holds a lone surrogate)") from None
    return subject


def check_metadata(metadata: Any) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise GalleryError("metadata must be a JSON object")
    text = json.dumps(metadata, sort_keys=True)
    if len(text) > 16_384:
        raise GalleryError("metadata is limited to 16 KB of JSON", 413, "too_large")
    return text


class GalleryStore:
    """The galleries of one appliance, for one recognizer."""

    def __init__(self, path: str | Path, recognizer: Recognizer) -> None:
        self.path, self.recognizer = str(path), recognizer
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._indexes: dict[str, Index] = {}
        self._index_lock = threading.Lock()
        self._db().executescript(SCHEMA)

    # ------------------------------------------------------------------ connections
    def _db(self) -> sqlite3.Connection:
        """One connection per thread: sqlite3 connections are not shared across threads."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: writers queue, readers keep seeing the last commit."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ------------------------------------------------------------------ galleries
    def _row(self, db: sqlite3.Connection, name: str) -> tuple[Any, ...]:
        row = db.execute(
            "SELECT name, version, recognizer, recognizer_sha256, dim, metadata, checksum, updated "
            "FROM galleries WHERE name = ?",
            (check_name(name),),
        ).fetchone()
        if row is None:
            raise GalleryError(f"no gallery named {name!r}", 404, "not_found")
        return row

    def own(self, name: str, recognizer: str, sha256: str) -> None:
        """Refuse a gallery made by another recognizer, naming both models."""
        if sha256 != self.recognizer.sha256:
            raise GalleryError(
                f"gallery {name!r} was made with {recognizer} (sha256 {sha256[:12]}...); this appliance runs "
                f"{self.recognizer.name} (sha256 {self.recognizer.sha256[:12]}...): its embeddings cannot be compared",
                409,
                "wrong_recognizer",
            )

    def describe(self, name: str) -> dict[str, Any]:
        db = self._db()
        row = self._row(db, name)
        return self._describe(db, row)

    def _describe(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
        subjects, faces = db.execute(
            "SELECT (SELECT count(*) FROM subjects WHERE gallery = ?), (SELECT count(*) FROM faces WHERE gallery = ?)",
            (row[0], row[0]),
        ).fetchone()
        return {
            "name": row[0],
            "version": row[1],
            "recognizer": row[2],
            "recognizer_sha256": row[3],
            "dim": row[4],
            "metadata": json.loads(row[5]),
            "checksum": row[6],
            "updated": row[7],
            "subjects": subjects,
            "faces": faces,
        }

    def list(self) -> list[dict[str, Any]]:
        db = self._db()
        rows = db.execute(
            "SELECT name, version, recognizer, recognizer_sha256, dim, metadata, checksum, updated "
            "FROM galleries ORDER BY name"
        ).fetchall()
        return [self._describe(db, row) for row in rows]

    def create(self, name: str, metadata: Any = None) -> dict[str, Any]:
        meta = check_metadata(metadata)
        with self._write() as db:
            if db.execute("SELECT 1 FROM galleries WHERE name = ?", (check_name(name),)).fetchone():
                raise GalleryError(f"gallery {name!r} exists already", 409, "exists")
            rec = self.recognizer
            db.execute(
                "INSERT INTO galleries VALUES (?, 1, ?, ?, ?, ?, '', ?)",
                (name, rec.name, rec.sha256, rec.dim, meta, time.time()),
            )
        return self.describe(name)

    def delete(self, name: str) -> None:
        with self._write() as db:
            self._row(db, name)
            db.execute("DELETE FROM faces WHERE gallery = ?", (name,))
            db.execute("DELETE FROM galleries WHERE name = ?", (name,))
        with self._index_lock:
            self._indexes.pop(name, None)

    def bad_names(self) -> tuple[str, ...]:
        """Stored names the rule refuses: written before the name check was anchored (a name with a
        final newline passed it), they can be listed but not reached through the API."""
        rows = self._db().execute("SELECT name FROM galleries ORDER BY name").fetchall()
        return tuple(row[0] for row in rows if not (isinstance(row[0], str) and NAME.fullmatch(row[0])))

    def rename_bad(self, name: str) -> str:
        """Rename a stored bad name to itself without surrounding whitespace, in one transaction, when
        that is a valid name no other gallery has; the new name, else a GalleryError saying why."""
        target = name.strip()
        if not NAME.fullmatch(target):
            raise GalleryError(f"{target!r} is not a valid name either: rename it by hand", 400, "invalid_name")
        with self._write() as db:
            db.execute("PRAGMA defer_foreign_keys = ON")  # parent and children renamed in one transaction
            if db.execute("SELECT 1 FROM galleries WHERE name = ?", (target,)).fetchone():
                raise GalleryError(f"a gallery named {target!r} already exists", 409, "exists")
            for table, column in (("galleries", "name"), ("subjects", "gallery"), ("faces", "gallery")):
                db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (target, name))
            self._bump(db, target)
        with self._index_lock:
            self._indexes.pop(name, None)
        return target

    def _bump(self, db: sqlite3.Connection, name: str) -> None:
        """A local write: a new version, and no bundle checksum any more (it no longer matches one)."""
        db.execute(
            "UPDATE galleries SET version = version + 1, checksum = '', updated = ? WHERE name = ?",
            (time.time(), name),
        )

    # ------------------------------------------------------------------ subjects
    def add_faces(self, name: str, subject: str, embeddings: np.ndarray, metadata: Any = None) -> dict[str, Any]:
        """Enrol faces of one subject (created on first use; metadata replaced when given)."""
        check_subject(subject)
        rows = unit_rows(embeddings, self.recognizer.dim)
        with self._write() as db:
            row = self._row(db, name)
            self.own(row[0], row[2], row[3])
            db.execute(
                "INSERT INTO subjects (gallery, subject, metadata) VALUES (?, ?, ?) "
                "ON CONFLICT (gallery, subject) DO UPDATE SET metadata = "
                "CASE WHEN ? THEN excluded.metadata ELSE subjects.metadata END",
                (name, subject, check_metadata(metadata), metadata is not None),
            )
            db.executemany(
                "INSERT INTO faces (gallery, subject, embedding) VALUES (?, ?, ?)",
                [(name, subject, row.tobytes()) for row in rows],
            )
            self._bump(db, name)
            faces = db.execute("SELECT count(*) FROM faces WHERE gallery = ? AND subject = ?", (name, subject))
            return {"subject": subject, "added": len(rows), "faces": faces.fetchone()[0]}

    def remove_subject(self, name: str, subject: str) -> None:
        with self._write() as db:
            self._row(db, name)
            gone = db.execute("DELETE FROM subjects WHERE gallery = ? AND subject = ?", (name, check_subject(subject)))
            if gone.rowcount == 0:
                raise GalleryError(f"no subject {subject!r} in gallery {name!r}", 404, "not_found")
            db.execute("DELETE FROM faces WHERE gallery = ? AND subject = ?", (name, subject))
            self._bump(db, name)

    def subjects(self, name: str) -> builtins.list[dict[str, Any]]:
        db = self._db()
        self._row(db, name)
        rows = db.execute(
            "SELECT s.subject, s.metadata, count(f.id) FROM subjects s LEFT JOIN faces f "
            "ON f.gallery = s.gallery AND f.subject = s.subject WHERE s.gallery = ? GROUP BY s.subject "
            "ORDER BY s.subject",
            (name,),
        ).fetchall()
        return [{"subject": r[0], "metadata": json.loads(r[1]), "faces": r[2]} for r in rows]

    # ------------------------------------------------------------------ search
    def index(self, name: str) -> Index:
        """This process's matrix of the gallery, rebuilt when the file has a newer version."""
        db = self._db()
        row = self._row(db, name)
        self.own(row[0], row[2], row[3])
        current = self._indexes.get(name)
        if current is not None and current.version == row[1]:
            return current
        with self._index_lock:
            current = self._indexes.get(name)
            if current is None or current.version != row[1]:
                current = self._build(db, name)
                self._indexes[name] = current
        return current

    def _build(self, db: sqlite3.Connection, name: str) -> Index:
        """Read version and rows in one read transaction, so they belong together; rows go
        straight into the matrix, so building never holds a second copy of the gallery."""
        db.execute("BEGIN")
        try:
            version, count = db.execute(
                "SELECT version, (SELECT count(*) FROM faces WHERE gallery = ?) FROM galleries WHERE name = ?",
                (name, name),
            ).fetchone()
            matrix = np.empty((count, self.recognizer.dim), np.float32)
            subjects: builtins.list[str] = []
            starts: builtins.list[int] = []
            rows = db.execute("SELECT subject, embedding FROM faces WHERE gallery = ? ORDER BY subject, id", (name,))
            for i, (subject, blob) in enumerate(rows):
                matrix[i] = np.frombuffer(blob, np.float32)
                if not subjects or subject != subjects[-1]:
                    subjects.append(subject)
                    starts.append(i)
        finally:
            db.execute("COMMIT")
        coarse = CoarseIndex(matrix) if count >= MIN_ROWS else None
        return Index(version, subjects, np.asarray(starts, dtype=np.int64), matrix, coarse)

    def search(
        self, name: str, embeddings: np.ndarray, top_k: int, threshold: float
    ) -> tuple[int, builtins.list[builtins.list[tuple[str, float]]]]:
        """(the version searched, per embedding its matches)."""
        index = self.index(name)
        if len(embeddings) == 0:
            return index.version, []
        return index.version, index.search(unit_rows(embeddings, self.recognizer.dim), top_k, threshold)

    def search_groups(
        self, name: str, groups: Sequence[Sequence[np.ndarray]], top_k: int, threshold: float
    ) -> tuple[int, builtins.list[builtins.list[builtins.list[tuple[str, float]]]]]:
        """Matches for groups of embeddings (an image's faces), all searched in one product."""
        flat = [e for group in groups for e in group]
        queries = np.stack(flat) if flat else np.zeros((0, self.recognizer.dim), np.float32)
        version, found = self.search(name, queries, top_k, threshold)
        out: builtins.list[builtins.list[builtins.list[tuple[str, float]]]] = []
        i = 0
        for group in groups:
            out.append(found[i : i + len(group)])
            i += len(group)
        return version, out

    # ------------------------------------------------------------------ bundles
    def dump(self, name: str) -> tuple[dict[str, Any], builtins.list[tuple[str, dict[str, Any], int]], np.ndarray]:
        """(gallery row, [(subject, metadata, faces)], embeddings in subject order) for a bundle."""
        db = self._db()
        db.execute("BEGIN")
        try:
            info = self._describe(db, self._row(db, name))
            subjects = [(s["subject"], s["metadata"], s["faces"]) for s in self.subjects(name) if s["faces"] > 0]
            blobs = db.execute("SELECT embedding FROM faces WHERE gallery = ? ORDER BY subject, id", (name,)).fetchall()
        finally:
            db.execute("COMMIT")
        matrix = np.frombuffer(b"".join(b[0] for b in blobs), dtype=np.float32).reshape(len(blobs), info["dim"])
        return info, subjects, matrix

    def replace(
        self,
        header: dict[str, Any],
        subjects: builtins.list[tuple[str, dict[str, Any], int]],
        matrix: np.ndarray,
    ) -> dict[str, Any]:
        """Install a verified bundle as one transaction: searches see the old gallery until it commits."""
        name = check_name(header["name"])
        self.own(name, header["recognizer"], header["recognizer_sha256"])
        rec, now = self.recognizer, time.time()
        with self._write() as db:
            db.execute("DELETE FROM faces WHERE gallery = ?", (name,))
            db.execute("DELETE FROM galleries WHERE name = ?", (name,))
            db.execute(
                "INSERT INTO galleries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    header["version"],
                    rec.name,
                    rec.sha256,
                    rec.dim,
                    check_metadata(header.get("metadata")),
                    header["checksum"],
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO subjects (gallery, subject, metadata) VALUES (?, ?, ?)",
                [(name, check_subject(s), check_metadata(m)) for s, m, _ in subjects],
            )
            owners = [s for s, _, count in subjects for _ in range(count)]
            db.executemany(
                "INSERT INTO faces (gallery, subject, embedding) VALUES (?, ?, ?)",
                [(name, s, row.tobytes()) for s, row in zip(owners, matrix, strict=True)],
            )
        return self.describe(name)

    def installed(self, name: str) -> tuple[int, str] | None:
        """(version, checksum) of a gallery, or None: lets an import that changes nothing say so."""
        row = self._db().execute("SELECT version, checksum FROM galleries WHERE name = ?", (name,)).fetchone()
        return (row[0], row[1]) if row else None
