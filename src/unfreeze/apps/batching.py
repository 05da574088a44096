"""MicroBatcher: concurrent requests' images predicted together, in one model call per short window.

A server answering one request at a time runs the model on one or two images per call, which wastes
most of a GPU and much of a CPU. The batcher queues the items of every request and hands up to
`max_batch` waiting items to one call of the predict function, run in a single worker thread (so the
model runs one batch at a time and the event loop never blocks). Each request gets back exactly its own
results, in its order. By default (`window_ms=0`) a batch starts as soon as the model is free, with
whatever is waiting: a lone request waits for nothing, and requests that arrive while the model runs
share the next call. A positive `window_ms` waits that long after the first request for company.

With `enabled=False` every request is predicted alone, in the same worker thread: the baseline of
benchmarks/bench_serve.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BatchSettings", "MicroBatcher"]

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class BatchSettings:
    """How requests are grouped: the longest wait for company (none by default), the largest batch, or no
    batching.

    Example:
        >>> BatchSettings(window_ms=2, max_batch=16).max_batch
        16
    """

    window_ms: float = 0.0
    max_batch: int = 32
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.window_ms >= 0:
            raise ValueError(f"window_ms must be >= 0, got {self.window_ms!r}.")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"max_batch must be a whole number >= 1, got {self.max_batch!r}.")


@dataclass
class _Request(Generic[Item, Result]):
    items: list[Item]
    future: asyncio.Future[list[Result]] = field(repr=False)


class MicroBatcher(Generic[Item, Result]):
    """Groups the items of concurrent `submit` calls into batches for `predict`.

    `predict` takes a list of items and returns one result per item, in order. It runs in one worker
    thread; an exception it raises is given to every request of that batch.

    Example:
        >>> batcher = MicroBatcher(lambda items: [item * 2 for item in items])
        >>> async def main():
        ...     async with batcher:
        ...         return await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]))
        >>> asyncio.run(main())
        [[2, 4], [6]]
    """

    def __init__(self, predict: Callable[[list[Item]], Sequence[Result]],
                 settings: BatchSettings | None = None) -> None:
        self.predict = predict
        self.settings = settings or BatchSettings()
        self.batch_sizes: list[int] = []  # items per model call, for the benchmark and the tests
        self._queue: asyncio.Queue[_Request[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def __aenter__(self) -> MicroBatcher[Item, Result]:
        self._queue = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="unfreeze-model")
        self._worker = asyncio.create_task(self._run(self._queue))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Finish every queued request, then stop the worker."""
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """Queue `items`; return their results once the batch holding them has run.

        Raises:
            RuntimeError: The batcher is not running (use it as `async with batcher:`).

        Example:
            >>> async def double(batcher):
            ...     async with batcher:
            ...         return await batcher.submit([1, 2, 3])
            >>> asyncio.run(double(MicroBatcher(lambda items: [item * 2 for item in items])))
            [2, 4, 6]
        """
        if self._queue is None or self._worker is None or self._worker.done():
            raise RuntimeError("the MicroBatcher is not running; use it as 'async with batcher:'")
        if not items:
            return []
        request: _Request[Item, Result] = _Request(list(items), asyncio.get_running_loop().create_future())
        await self._queue.put(request)
        return await request.future

    async def _next_group(self, queue: asyncio.Queue[_Request[Item, Result]]) -> list[_Request[Item, Result]]:
        """The first waiting request, plus those that arrive within the window while the batch has room."""
        group = [await queue.get()]
        if not self.settings.enabled:
            return group
        count = len(group[0].items)
        deadline = asyncio.get_running_loop().time() + self.settings.window_ms / 1000
        while count < self.settings.max_batch:
            if queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                request = queue.get_nowait()
            group.append(request)
            count += len(request.items)
        return group

    async def _run(self, queue: asyncio.Queue[_Request[Item, Result]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = await self._next_group(queue)
            items = [item for request in group for item in request.items]
            try:
                results = await loop.run_in_executor(self._executor, self.predict, items)
                self.batch_sizes.append(len(items))
                start = 0
                for request in group:
                    if not request.future.done():  # a client that went away cancelled its future
                        request.future.set_result(list(results[start:start + len(request.items)]))
                    start += len(request.items)
            except Exception as error:  # given to the requests, which answer 500; the worker lives on
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(error)
            finally:
                for _ in group:
                    queue.task_done()
