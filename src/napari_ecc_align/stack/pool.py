"""Running frames in a thread pool, with OpenCV and BLAS held to one thread each."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import cv2
from threadpoolctl import threadpool_limits

from ..engine import AlignmentError

# A frame that cannot be aligned is recorded; anything else raises.
FRAME_FAILURES = (AlignmentError, ValueError)


def run_tasks(tasks: Iterator[tuple[int, Callable]], workers: int) -> Iterator[tuple]:
    """Run ``(index, fn)`` tasks; yield ``(index, result, error)`` in completion order.

    At most ``2 * workers`` tasks are queued, so frames are read as the pool gets to
    them. Closing the generator cancels the queued tasks and waits for running ones.
    """
    if workers == 1:
        for index, fn in tasks:
            try:
                yield index, fn(), None
            except FRAME_FAILURES as exc:
                yield index, None, exc
        return
    pool, pending, exhausted = ThreadPoolExecutor(workers, "ecc-stack"), {}, False
    try:
        while True:
            while not exhausted and len(pending) < 2 * workers:
                item = next(tasks, None)
                exhausted = item is None
                if item is not None:
                    pending[pool.submit(item[1])] = item[0]
            if not pending:
                return
            for future in wait(pending, return_when=FIRST_COMPLETED)[0]:
                index, exc = pending.pop(future), future.exception()
                if exc is not None and not isinstance(exc, FRAME_FAILURES):
                    raise exc
                yield index, (None if exc else future.result()), exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_LIMIT_LOCK = threading.Lock()
_limit_state: dict[str, Any] = {"users": 0}


@contextmanager
def single_threaded():
    """OpenBLAS and OpenCV on one thread each while stack alignments run: the frame
    workers are the parallelism. Reference-counted; the old values come back after.

    OpenBLAS threads busy-wait between the many small BLAS calls ECC makes (np.dot on
    (p, 30000) arrays): with them one 1 MP frame took ~53 ms and both cores of a 2-core
    machine instead of ~38 ms and one, and a second worker thread gained nothing.
    OpenCV's own threads would oversubscribe the pool (no measurable effect on 2 cores).
    """
    with _LIMIT_LOCK:
        if _limit_state["users"] == 0:
            _limit_state["cv2"] = cv2.getNumThreads()
            _limit_state["blas"] = threadpool_limits(limits=1, user_api="blas")
            cv2.setNumThreads(1)
        _limit_state["users"] += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _limit_state["users"] -= 1
            if _limit_state["users"] == 0:
                cv2.setNumThreads(_limit_state["cv2"])
                _limit_state["blas"].restore_original_limits()
