"""``--engine ray``: Ray actors on a local Ray or an existing cluster (pip extra ``avsync[ray]``).

Why actors (and not Ray Data ``map_batches``): a batch is a stream of independent, seconds-long
files whose result must reach one writer as soon as it exists. An actor per CPU builds the model
once in ``__init__``; the driver keeps up to two tasks queued per actor and ``ray.wait``\\ s for any of
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
    """``start()`` connects and creates the actors (their models load while the driver lists the
    inputs); ``run(items)`` yields ``(item, row)`` as each input finishes; ``close()`` stops the
    actors (and the local Ray it started). ``worker_pids``: the actors' (pid, host) once ready."""

    name = "ray"

    def __init__(self, config: WorkerConfig, workers: int | None = None, address: str | None = None,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.config = config
        self.workers = workers
        self.address = address
        self.max_attempts = max_attempts
        self.replaced = 0
        self._ray = None
        self._started_ray = False
        self._actor_cls = None
        self._actors: list = []
        self._ready: list = []  # per slot: the ref of ready(), the actor's first task

    @property
    def worker_pids(self) -> list[tuple[int, str]]:
        """(pid, host) of each current actor (waits until they are ready)."""
        return self._ray.get(list(self._ready)) if self._ready else []

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

    def start(self, max_inputs: int | None = None) -> None:
        """Connect (or start a local Ray) and create one actor per worker (no more than
        ``max_inputs`` when given), without waiting for them."""
        if self._ray is not None:
            return
        self._ray, self._started_ray = self._connect()
        cpus = max(1, int(self._ray.cluster_resources().get("CPU", 1)))
        n = min(self.workers or cpus, cpus)  # an actor beyond the CPUs would never be scheduled
        n = max(1, min(n, max_inputs or n))
        self._actor_cls = self._ray.remote(num_cpus=1, max_restarts=0)(BatchWorker)
        for _ in range(n):
            self._add_actor()

    def _add_actor(self, slot: int | None = None) -> None:
        actor = self._actor_cls.remote(self.config)
        if slot is None:
            self._actors.append(actor)
            self._ready.append(actor.ready.remote())
        else:
            self._actors[slot], self._ready[slot] = actor, actor.ready.remote()

    def close(self) -> None:
        """Kill the actors; shut down the local Ray if start() started it."""
        if self._ray is None:
            return
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001  (already gone)
                pass
        self._actors, self._ready = [], []
        if self._started_ray:
            self._ray.shutdown()
        self._ray, self._started_ray = None, False

    def run(self, items: list[BatchInput]) -> Iterator[tuple[BatchInput, dict]]:
        """Measure ``items``, handed out in the given order; (item, row) in completion order."""
        self.start()
        try:
            yield from self._run(self._ray, items)
        finally:
            self.close()

    def _run(self, ray, items: list[BatchInput]) -> Iterator[tuple[BatchInput, dict]]:
        if not items:
            return
        actors = self._actors
        while len(actors) > len(items):  # fewer inputs than actors: free the CPUs of the others
            ray.kill(actors.pop(), no_restart=True)
            self._ready.pop()
        pending: deque[BatchInput] = deque(items)
        attempts: Counter[str] = Counter()
        inflight: dict = {}  # ObjectRef -> (actor slot, item)
        load = [0] * len(actors)

        def submit() -> None:
            """One task to every idle actor, then a second one each (queued behind the first, so
            an actor never waits for the driver) while enough inputs are left; near the end the
            inputs wait here and go to whichever actor is free first (a short tail)."""
            for depth in range(1, IN_FLIGHT_PER_WORKER + 1):
                for slot, actor in enumerate(actors):
                    if pending and load[slot] < depth and (depth == 1 or len(pending) > len(actors)):
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
                    self._replace(slot)
                    self._requeue_slot(slot, inflight, pending, load, attempts)
                attempts[item.input_id] += 1
                if attempts[item.input_id] < self.max_attempts:
                    pending.appendleft(item)
                    submit()
                    continue
                reason = "worker lost" if died else f"Ray error {type(exc).__name__}"
                row = lost_row(item, attempts[item.input_id], reason)
            submit()  # before the consumer writes the row: the actor gets its next input now
            yield item, row

    def _replace(self, slot: int) -> None:
        """A fresh actor in ``slot`` (the old one is dead or unusable)."""
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001  (already gone)
            pass
        self._add_actor(slot)
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
