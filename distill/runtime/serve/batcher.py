"""Dynamic batching: the lines that queue up while the model works are read together by
its next call (up to ``max_batch``, sorted by width; ``max_wait_ms`` > 0 also makes a
lone line wait that long for company); the queue is bounded, and a full queue is
refused (the API answers 503) instead of growing without limit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class QueueFull(RuntimeError):
    pass


@dataclass
class _Job:
    array: np.ndarray
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """``await batcher.submit(array)`` -> the model's result for that preprocessed line.

    ``run_batch(list of arrays) -> list of results`` runs in a worker thread, so the
    event loop keeps accepting requests while the model works. ``max_batch=1`` turns
    batching off (one line per model call).
    """

    def __init__(
        self,
        run_batch: Callable[[list[np.ndarray]], list],
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1")
        self.run_batch, self.max_batch = run_batch, max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self.on_batch = on_batch
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, array: np.ndarray):
        self.start()
        job = _Job(array, asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"server busy: {self.queue.maxsize} lines already queued") from None
        return await job.future

    async def _collect(self) -> list[_Job]:
        jobs = [await self.queue.get()]
        deadline = jobs[0].queued_at + self.max_wait
        while len(jobs) < self.max_batch:
            if not self.queue.empty():  # already waiting: take it without a pause
                jobs.append(self.queue.get_nowait())
                continue
            timeout = deadline - time.perf_counter()
            if timeout <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            jobs.sort(key=lambda j: j.array.shape[-1])  # similar widths pad less
            start = time.perf_counter()
            try:
                results = await asyncio.to_thread(self.run_batch, [j.array for j in jobs])
            except Exception as e:  # the model failed: every waiting request hears why
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            if self.on_batch:
                self.on_batch(len(jobs), time.perf_counter() - start)
            for j, r in zip(jobs, results):
                if not j.future.done():
                    j.future.set_result(r)
