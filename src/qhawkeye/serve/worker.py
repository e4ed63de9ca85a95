"""The batching worker: one thread owns the model and answers queued requests in batches.

The HTTP handlers never call the model. Each request becomes a :class:`Job` (a chat row, or the images of
one ``/v1/score`` request with ``images x draws`` rows) that :meth:`BatchWorker.submit` puts on a bounded
queue; it is answered through the job's ``Future``, which the handler awaits. The worker thread:

- takes the first queued job, then keeps taking jobs for ``wait_s`` (the server's ``--batch-wait-ms``) or
  until the batch holds ``max_rows`` rows (``--max-batch-size``); a lone job larger than that runs alone;
- keeps one kind per batch: a job of the other kind, or one that would overflow the batch, closes it and
  is carried over to start the next batch;
- makes one model call per batch (``Scorer.generate`` for chat, ``Scorer.score_batch`` for scoring) and hands
  each job its share of the outputs;
- when a batch of several jobs raises, retries each job alone, so only the failing one gets the error.

A full queue refuses a job at once with :class:`QueueFull` (the server answers 503) rather than letting waits
grow without bound. :meth:`BatchWorker.stop` lets the running batch finish and fails the jobs still queued
with :class:`ShuttingDown`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from qhawkeye.scoring.scorer import Scorer

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The worker's queue holds ``max_queue`` requests already."""


class ShuttingDown(Exception):
    """The worker is stopping and takes no more work."""


@dataclass
class Job:
    """One request's work: a chat row (payload: GenerationRequest) or images to score ([(id, image)])."""

    kind: Literal["chat", "score"]
    payload: Any
    rows: int
    future: Future = field(default_factory=Future)


class BatchWorker:
    """The one thread that owns the model: it runs queued jobs in batches, one model call per batch.

    A batch holds jobs of one kind, at most ``max_rows`` rows (a lone job larger than that runs alone), and
    is closed ``wait_s`` after its first job arrived or when a job of the other kind comes next. When a
    batch of several jobs raises, each job is retried alone, so only the one that fails gets the error.
    """

    def __init__(self, scorer: Scorer, max_rows: int, wait_s: float, max_queue: int):
        self.scorer, self.max_rows, self.wait_s = scorer, max_rows, wait_s
        self._queue: queue.Queue[Job] = queue.Queue(max_queue)
        self._carry: Job | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="qhawkeye-batch-worker", daemon=True)
        self.batches_run = self.rows_run = self.batches_failed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the running batch, fail what is still queued with :class:`ShuttingDown`, join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    @property
    def depth(self) -> int:
        return self._queue.qsize() + (self._carry is not None)

    def submit(self, job: Job) -> Future:
        if self._stop.is_set():
            raise ShuttingDown("the server is shutting down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests are already waiting") from None
        return job.future

    def _loop(self) -> None:
        while not self._stop.is_set():
            jobs = self._collect()
            if jobs:
                self._run(jobs)
        while (job := self._next(0)) is not None:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the server is shutting down"))

    def _next(self, timeout: float) -> Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _collect(self) -> list[Job]:
        first = self._next(0.1)
        if first is None:
            return []
        jobs, rows = [first], first.rows
        deadline = time.monotonic() + self.wait_s
        while rows < self.max_rows:
            job = self._next(max(0.0, deadline - time.monotonic()))
            if job is None:
                break
            if job.kind != first.kind or rows + job.rows > self.max_rows:
                self._carry = job
                break
            jobs.append(job)
            rows += job.rows
        return [job for job in jobs if job.future.set_running_or_notify_cancel()]

    def _run(self, jobs: list[Job], retry: bool = True) -> None:
        start = time.perf_counter()
        try:
            outputs = self._call(jobs)
        except Exception as err:
            self.batches_failed += 1
            logger.exception("a batch of %d %s requests failed", len(jobs), jobs[0].kind)
            if retry and len(jobs) > 1:
                for job in jobs:
                    self._run([job], retry=False)
            else:
                jobs[0].future.set_exception(err)
            return
        for job, out in zip(jobs, outputs, strict=True):
            job.future.set_result(out)
        self.batches_run += 1
        self.rows_run += sum(job.rows for job in jobs)
        logger.debug(
            "ran %d %s requests in one batch in %.3f s", len(jobs), jobs[0].kind, time.perf_counter() - start
        )

    def _call(self, jobs: list[Job]) -> list:
        """One model call for the whole batch; one output per job."""
        if jobs[0].kind == "chat":
            return self.scorer.generate([job.payload for job in jobs])
        items = [item for job in jobs for item in job.payload]
        results = self.scorer.score_batch([img for _, img in items], [key for key, _ in items])
        out, start = [], 0
        for job in jobs:
            out.append(results[start : start + len(job.payload)])
            start += len(job.payload)
        return out
