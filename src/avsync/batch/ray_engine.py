"""``--engine ray``: Ray actors on a local Ray or an existing cluster (pip extra ``avsync[ray]``).

Why actors (and not Ray Data ``map_batches``): a batch is a stream of independent, seconds-long
files whose result must reach one writer as soon as it exists. An actor per CPU builds the model
once in ``__init__``; the driver keeps two tasks queued per actor and ``ray.wait``\\ s for any of
them, so every result is appended to the JSONL the moment it lands (Ray Data would buffer blocks,
and needs pyarrow/pandas). When an actor dies (killed, OOM, a lost node) its queued tasks raise
``RayActorError``: the driver starts a replacement and tries those inputs again (up to
``MAX_ATTEMPTS``), then reports them as errors. Only the driver writes, so resume stays exact.

Inputs travel as paths: every node must see the files at the same path (shared storage: NFS,
a mounted bucket) and have ``avsync[ray]`` installed with the same Python, Ray and weights.
This module is imported only by ``--engine ray``.
"""

from __future__ import annotations

import os
import socket
from collections import Counter, deque
from collections.abc import Iterator

from avsync.batch.inputs import BatchInput
from avsync.batch.local import IN_FLIGHT_PER_WORKER, MAX_ATTEMPTS, lost_row
from avsync.batch.worker import WorkerConfig, init_worker, process
from avsync.errors import AvsyncError


class BatchWorker:
    """The actor body (wrapped with ``ray.remote`` at run time): one model, many inputs."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        init_worker(config)

    def ready(self) -> tuple[int, str]:
        """(pid, host) once the model is loaded."""
        return os.getpid(), socket.gethostname()

    def process(self, item: BatchInput) -> dict:
        return process(item, self.config)


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise AvsyncError("--engine ray needs Ray: pip install 'avsync[ray]'") from exc
    return ray


class RayEngine:
    """``run(items)`` yields ``(item, row)`` as each input finishes; ``worker_pids`` lists the
    actors' (pid, host) after start-up (ready, model loaded)."""

    name = "ray"

    def __init__(self, config: WorkerConfig, workers: int | None = None, address: str | None = None,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.config = config
        self.workers = workers
        self.address = address
        self.max_attempts = max_attempts
        self.worker_pids: list[tuple[int, str]] = []
        self.replaced = 0

    def _connect(self):
        ray = import_ray()
        if ray.is_initialized():
            return ray, False
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray"
            raise AvsyncError(f"cannot start or reach Ray at {where} ({exc})") from exc
        return ray, True

    def run(self, items: list[BatchInput]) -> Iterator[tuple[BatchInput, dict]]:
        ray, started = self._connect()
        try:
            yield from self._run(ray, items)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, items: list[BatchInput]) -> Iterator[tuple[BatchInput, dict]]:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = min(self.workers or cpus, cpus)  # an actor beyond the CPUs would never be scheduled
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(BatchWorker)
        actors = [actor_cls.remote(self.config) for _ in range(min(n, max(1, len(items))))]
        if not items:
            return
        self.worker_pids = ray.get([a.ready.remote() for a in actors])
        pending: deque[BatchInput] = deque(items)
        attempts: Counter[str] = Counter()
        inflight: dict = {}  # ObjectRef -> (actor slot, item)
        load = [0] * len(actors)

        def submit() -> None:
            for slot, actor in enumerate(actors):
                while pending and load[slot] < IN_FLIGHT_PER_WORKER:
                    item = pending.popleft()
                    inflight[actor.process.remote(item)] = (slot, item)
                    load[slot] += 1

        submit()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            slot, item = inflight.pop(ref)
            load[slot] -= 1
            try:
                row = ray.get(ref)
            except ray.exceptions.RayError as exc:
                died = isinstance(exc, ray.exceptions.RayActorError)
                if died:  # its other queued tasks are lost too: a new actor takes them all
                    self._replace(actor_cls, actors, slot)
                    self._requeue_slot(slot, inflight, pending, load, attempts)
                attempts[item.input_id] += 1
                if attempts[item.input_id] >= self.max_attempts:
                    reason = "worker lost" if died else f"Ray error {type(exc).__name__}"
                    yield item, lost_row(item, attempts[item.input_id], reason)
                else:
                    pending.appendleft(item)
                submit()
                continue
            yield item, row
            submit()

    def _replace(self, actor_cls, actors: list, slot: int) -> None:
        """A fresh actor in ``slot`` (the old one is dead or unusable)."""
        import ray

        try:
            ray.kill(actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001  (already gone)
            pass
        actors[slot] = actor_cls.remote(self.config)
        self.replaced += 1

    def _requeue_slot(self, slot: int, inflight: dict, pending: deque, load: list[int],
                      attempts: Counter) -> None:
        """The other tasks queued on a dead actor will fail too: send them to the new one."""
        for ref, (s, item) in list(inflight.items()):
            if s == slot:
                del inflight[ref]
                load[slot] -= 1
                attempts[item.input_id] += 1
                pending.appendleft(item)
