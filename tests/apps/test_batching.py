"""MicroBatcher: concurrent requests share model calls, each gets exactly its own results."""

from __future__ import annotations

import asyncio
import threading

import pytest

from unfreeze.apps.batching import BatchSettings, MicroBatcher


def double(items: list[int]) -> list[int]:
    return [item * 2 for item in items]


async def submit_all(batcher: MicroBatcher[int, int], requests: list[list[int]]) -> list[list[int]]:
    async with batcher:
        return await asyncio.gather(*(batcher.submit(items) for items in requests))


def test_concurrent_requests_are_grouped_and_each_gets_its_own_results() -> None:
    batcher = MicroBatcher(double, BatchSettings(window_ms=200, max_batch=64))
    requests = [[index, index + 100] for index in range(10)]
    results = asyncio.run(submit_all(batcher, requests))
    assert results == [[2 * a, 2 * b] for a, b in requests]
    assert sum(batcher.batch_sizes) == 20 and len(batcher.batch_sizes) < 10  # grouped, none lost


def test_a_batch_never_exceeds_max_batch_beyond_one_request() -> None:
    batcher = MicroBatcher(double, BatchSettings(window_ms=200, max_batch=4))
    results = asyncio.run(submit_all(batcher, [[index] for index in range(10)]))
    assert results == [[2 * index] for index in range(10)]
    assert max(batcher.batch_sizes) == 4 and sum(batcher.batch_sizes) == 10


def test_without_batching_every_request_runs_alone() -> None:
    batcher = MicroBatcher(double, BatchSettings(enabled=False))
    results = asyncio.run(submit_all(batcher, [[1, 2], [3], [4]]))
    assert results == [[2, 4], [6], [8]]
    assert batcher.batch_sizes == [2, 1, 1]


def test_the_model_runs_in_one_worker_thread_off_the_event_loop() -> None:
    threads: set[str] = set()

    def record(items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        return items

    batcher = MicroBatcher(record, BatchSettings(window_ms=0))
    asyncio.run(submit_all(batcher, [[1], [2], [3]]))
    assert len(threads) == 1 and threads.pop().startswith("unfreeze-model")


def test_an_error_reaches_the_requests_of_its_batch_and_the_worker_lives_on() -> None:
    def fail_on_negative(items: list[int]) -> list[int]:
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return items

    async def scenario() -> tuple[BaseException | list[int], list[int]]:
        batcher = MicroBatcher(fail_on_negative, BatchSettings(enabled=False))
        async with batcher:
            failed = await asyncio.gather(batcher.submit([-1]), return_exceptions=True)
            return failed[0], await batcher.submit([5])

    failed, later = asyncio.run(scenario())
    assert isinstance(failed, ValueError) and later == [5]


def test_exit_answers_every_queued_request_first() -> None:
    async def scenario() -> list[list[int]]:
        batcher = MicroBatcher(double, BatchSettings(window_ms=50))
        async with batcher:
            pending = [asyncio.create_task(batcher.submit([index])) for index in range(5)]
            await asyncio.sleep(0)  # queued, not yet answered, when the block exits
        return [task.result() for task in pending]

    assert asyncio.run(scenario()) == [[0], [2], [4], [6], [8]]


def test_submit_outside_the_context_and_bad_settings_are_refused() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(MicroBatcher(double).submit([1]))
    with pytest.raises(ValueError, match="max_batch"):
        BatchSettings(max_batch=0)
    with pytest.raises(ValueError, match="window_ms"):
        BatchSettings(window_ms=-1)


def test_by_default_a_lone_request_runs_at_once_and_those_arriving_meanwhile_share_the_next_call() -> None:
    import time

    started = threading.Event()

    def slow(items: list[int]) -> list[int]:
        started.set()
        time.sleep(0.2)
        return items

    async def scenario(batcher: MicroBatcher[int, int]) -> list[list[int]]:
        async with batcher:
            first = asyncio.create_task(batcher.submit([1]))
            while not started.is_set():  # the model is busy with the first request
                await asyncio.sleep(0.001)
            later = [asyncio.create_task(batcher.submit([n])) for n in (2, 3, 4)]
            return [await first, *[await task for task in later]]

    batcher = MicroBatcher(slow)
    assert BatchSettings().window_ms == 0  # no wait for company: at one client a window is pure latency
    assert asyncio.run(scenario(batcher)) == [[1], [2], [3], [4]]
    assert batcher.batch_sizes == [1, 3]
