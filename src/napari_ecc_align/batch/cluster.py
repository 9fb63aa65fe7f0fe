"""Dask side of a batch: the client (local cluster or a scheduler address), submitting
the pairs, collecting results as they finish, and the progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
import time
from typing import Any

from .pairs import STATUSES, PairJob
from .worker import align_pair, describe_failure


# ------------------------------------------------------------------------------------ on Dask
def run_pairs(client, jobs, todo, rows, bar, fail_fast) -> bool:
    """Run the pairs ``todo`` as Dask tasks; fill ``rows``. True if stopped by ``fail_fast``."""
    from distributed import as_completed

    token = secrets.token_hex(4)
    futures = {
        client.submit(align_pair, jobs[i], key=f"ecc-align-{token}-{i}", pure=False): i
        for i in todo
    }
    bar.start()
    try:
        for future in as_completed(list(futures), loop=client.loop):
            i = futures[future]
            rows[i] = _result(future, jobs[i])
            bar.update(rows[i])
            if fail_fast and rows[i]["status"] == "failed":
                return True
    finally:
        client.cancel([f for f in futures if not f.done()])
    return False


def _result(future, job: PairJob) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # the task itself died: a killed worker, a lost scheduler
        return job.row("failed", f"the task failed on the cluster: {describe_failure(exc)}")


@contextlib.contextmanager
def dask_client(scheduler, n_workers: int, bar):
    import distributed

    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, set_as_default=False)
        except (OSError, ValueError) as exc:
            raise ConnectionError(
                f"cannot connect to the Dask scheduler at {scheduler}: {describe_failure(exc)}"
            ) from None
        try:
            if not client.scheduler_info(n_workers=-1).get("workers"):
                bar.write(f"waiting for workers to join the scheduler at {scheduler} ...")
            yield client
        finally:
            client.close()
        return
    # One single-threaded process per worker, loopback only, no dashboard (so no bokeh).
    # The scheduler and workers start an HTTP server even then: give it no routes and a
    # random loopback port (not 8787, which a user's own dashboard may hold).
    import dask

    no_http = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
    with dask.config.set(no_http):
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


class ProgressBar:
    """tqdm on stderr: all pairs, with done / failed / remaining and pairs per minute.

    The bar appears when the tasks are submitted (nothing to show while the cluster starts);
    pairs already decided (complete or failed before running) count from the start.
    """

    def __init__(self, total: int, finished, *, enabled: bool):
        self.counts = dict.fromkeys(STATUSES, 0)
        for row in finished:
            self.counts[row["status"]] += 1
        self.total, self.enabled, self.bar = total, enabled, None
        self.started, self.new = time.perf_counter(), 0

    @property
    def remaining(self) -> int:
        return self.total - sum(self.counts.values())

    def start(self) -> None:
        self.started = time.perf_counter()
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.total - self.remaining,
                unit="pair",
                desc="aligning",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
            )
            self._postfix()

    def update(self, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        self.new += 1
        if self.bar is not None:
            self._postfix(refresh=False)
            self.bar.update(1)

    def write(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr)

    def _postfix(self, refresh: bool = True) -> None:
        minutes = (time.perf_counter() - self.started) / 60
        rate = f", {self.new / minutes:.1f} pairs/min" if self.new and minutes > 0 else ""
        c = self.counts
        self.bar.set_postfix_str(
            f"done={c['ok'] + c['skipped']} failed={c['failed']} remaining={self.remaining}{rate}",
            refresh=refresh,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
