"""The filter stage's resumable answer checkpoint, ``<out>/filter_answers.jsonl``.

:class:`AnswerLog` appends one JSON line per answered pair (id, both image paths, the answer), flushed and
fsynced as it arrives, and loads the stored answers of a run's pairs so a rerun asks only the others; lines
for other pairs, or cut short by a kill, are set aside (those pairs are asked again). :class:`Collector` is
a run's sink for each outcome: answers go to the log, failures are kept in memory only (not checkpointed,
so a rerun asks them again), and each outcome ticks the progress bar.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class AnswerLog:
    """``filter_answers.jsonl``: one line per answered pair, appended and fsynced as it arrives."""

    def __init__(self, path: Path):
        self.path = path

    def load(self, records: list[dict]) -> dict[str, dict]:
        """The stored answers of ``records``' pairs; lines for other pairs or other files are set aside."""
        if not self.path.is_file():
            return {}
        by_id = {r["id"]: r for r in records}
        answers, skipped = {}, 0
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                skipped += 1  # a line cut short by a kill: that pair is asked again
                continue
            record = by_id.get(row.get("id"))
            paths = (row.get("image"), row.get("degraded"))
            if record is None or paths != (record["image"], record["degraded"]) or "answer" not in row:
                skipped += 1
                continue
            answers[row["id"]] = row["answer"]
        if skipped:
            logger.warning(
                "%s: %d lines are for no pair of this input (or cut short); those are asked again",
                self.path,
                skipped,
            )
        return answers

    def __enter__(self) -> AnswerLog:
        self.file = open(self.path, "a+b")  # noqa: SIM115 - closed by __exit__
        self.file.seek(0, os.SEEK_END)
        if self.file.tell() > 0:
            self.file.seek(-1, os.SEEK_END)
            if self.file.read(1) != b"\n":
                self.file.write(b"\n")  # after a line cut short by a kill
        return self

    def append(self, record: dict, answer: dict) -> None:
        row = {"id": record["id"], "image": record["image"], "degraded": record["degraded"], "answer": answer}
        self.file.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc) -> None:
        self.file.close()


class Collector:
    """Saves each outcome (answers to the log, failures in memory) and reports it to the progress bar."""

    def __init__(self, log: AnswerLog, answers: dict[str, dict], bar):
        self.log, self.answers, self.bar = log, answers, bar
        self.failures: dict[str, str] = {}
        self.asked = 0

    def save(self, record: dict, answer: dict | None, failure: str | None) -> None:
        self.asked += 1
        if answer is not None:
            self.log.append(record, answer)
            self.answers[record["id"]] = answer
        else:
            self.failures[record["id"]] = failure
            logger.warning("pair %s: no answer: %s", record["id"], failure)

    def report(self) -> None:
        self.bar.update(1)
        self.bar.set_postfix(failed=len(self.failures), refresh=False)
