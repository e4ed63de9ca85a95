"""The review decisions: a durable SQLite store, and the rule that combines reviewers who disagree.

Tables (SQLite, WAL journal, ``synchronous=FULL``):

- ``decisions``: one row per (pair id, reviewer): the reviewer's current ``decision`` (``"perceptible"``:
  they can see a difference; ``"imperceptible"``: they cannot) and when it was made (``decided_at``, Unix s).
- ``history``: every decision ever made, in order, with the decision it replaced (``previous``, NULL for a
  pair's first). **Undo** takes the reviewer's latest history entry not yet undone, restores ``previous``
  (or deletes the row when there was none) and marks the entry undone; repeated undos walk further back.
  Reviewers undo only their own decisions.

Every call opens its own connection and commits before returning, so a killed server loses nothing, and
threads (the web server's pool) and processes (an export while the server runs) can share one file: writes
take SQLite's write lock (``BEGIN IMMEDIATE``) and wait for one another up to ``busy_timeout``.

**Combining reviewers** (:func:`combine_votes`): the decision with more than half of the votes wins; a tie
(one against one, two against two) and a pair without votes are undecided (``None``). ``qhawkeye data build``
treats undecided pairs with its explicit ``--unreviewed keep|drop``.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

PERCEPTIBLE = "perceptible"
IMPERCEPTIBLE = "imperceptible"
DECISIONS = (PERCEPTIBLE, IMPERCEPTIBLE)
REVIEWER_PATTERN = re.compile(r"^[\w.@+-][\w .@+-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    pair_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('perceptible', 'imperceptible')),
    decided_at REAL NOT NULL,
    PRIMARY KEY (pair_id, reviewer)
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL,
    previous TEXT,
    decided_at REAL NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS history_by_reviewer ON history (reviewer, undone, seq);
"""


def check_reviewer(reviewer: str) -> str:
    """The reviewer name, stripped; a ValueError saying what a name may hold otherwise."""
    name = (reviewer or "").strip()
    if not REVIEWER_PATTERN.match(name):
        raise ValueError(
            f"reviewer name {reviewer!r} is not valid: use 1 to 64 letters, digits, spaces or . @ + - _"
        )
    return name


def check_decision(decision: str) -> str:
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not valid: use {PERCEPTIBLE!r} or {IMPERCEPTIBLE!r}")
    return decision


class ReviewStore:
    """Review decisions in the SQLite file ``path`` (created with its tables when missing)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on exit (rolled back on error)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def journal_mode(self) -> str:
        with self._connect() as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]

    def record(self, pair_id: str, reviewer: str, decision: str) -> None:
        """Store ``reviewer``'s ``decision`` on ``pair_id`` (replacing theirs, if any), committed at once."""
        reviewer, decision, now = check_reviewer(reviewer), check_decision(decision), time.time()
        with self._write() as db:
            row = db.execute(
                "SELECT decision FROM decisions WHERE pair_id = ? AND reviewer = ?", (pair_id, reviewer)
            ).fetchone()
            db.execute(
                "INSERT INTO history (pair_id, reviewer, decision, previous, decided_at) VALUES (?, ?, ?, ?, ?)",
                (pair_id, reviewer, decision, row[0] if row else None, now),
            )
            db.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?) ON CONFLICT (pair_id, reviewer) "
                "DO UPDATE SET decision = excluded.decision, decided_at = excluded.decided_at",
                (pair_id, reviewer, decision, now),
            )

    def undo(self, reviewer: str) -> dict | None:
        """Undo ``reviewer``'s latest decision: ``{"pair_id", "decision"}`` (the restored one, maybe None)."""
        reviewer = check_reviewer(reviewer)
        with self._write() as db:
            row = db.execute(
                "SELECT seq, pair_id, previous FROM history WHERE reviewer = ? AND undone = 0 "
                "ORDER BY seq DESC LIMIT 1",
                (reviewer,),
            ).fetchone()
            if row is None:
                return None
            seq, pair_id, previous = row
            db.execute("UPDATE history SET undone = 1 WHERE seq = ?", (seq,))
            if previous is None:
                db.execute("DELETE FROM decisions WHERE pair_id = ? AND reviewer = ?", (pair_id, reviewer))
            else:
                db.execute(
                    "UPDATE decisions SET decision = ?, decided_at = ? WHERE pair_id = ? AND reviewer = ?",
                    (previous, time.time(), pair_id, reviewer),
                )
        return {"pair_id": pair_id, "decision": previous}

    def reviewer_decisions(self, reviewer: str) -> dict[str, str]:
        """``{pair_id: decision}`` for one reviewer."""
        reviewer = check_reviewer(reviewer)
        with self._connect() as db:
            rows = db.execute("SELECT pair_id, decision FROM decisions WHERE reviewer = ?", (reviewer,))
            return dict(rows.fetchall())

    def votes(self) -> dict[str, dict[str, str]]:
        """``{pair_id: {reviewer: decision}}`` over every reviewer."""
        out: dict[str, dict[str, str]] = {}
        with self._connect() as db:
            rows = db.execute("SELECT pair_id, reviewer, decision FROM decisions ORDER BY pair_id, reviewer")
            for pair_id, reviewer, decision in rows:
                out.setdefault(pair_id, {})[reviewer] = decision
        return out


def combine_votes(votes: dict[str, str]) -> str | None:
    """The combined decision of ``{reviewer: decision}``: a strict majority, else None (tie or no votes).

    >>> combine_votes({"ana": "perceptible", "bo": "perceptible", "cy": "imperceptible"})
    'perceptible'
    >>> combine_votes({"ana": "perceptible", "bo": "imperceptible"}) is None
    True
    """
    counts = Counter(votes.values())
    for decision, n in counts.items():
        if 2 * n > len(votes):
            return decision
    return None


def combined_decisions(store: ReviewStore, pair_ids: Iterable[str] | None = None) -> dict[str, dict]:
    """``{pair_id: {"decision", "votes"}}`` by :func:`combine_votes`.

    Without ``pair_ids``: the pairs anyone voted on. With them: exactly those pairs, undecided ones included
    (``{"decision": None, "votes": {}}``); votes on other ids (not in the manifest) are left out.
    """
    votes = store.votes()
    ids = list(votes) if pair_ids is None else list(pair_ids)
    return {i: {"decision": combine_votes(votes.get(i, {})), "votes": votes.get(i, {})} for i in ids}
