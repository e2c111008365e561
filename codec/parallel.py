"""Where the GOPs of a file are coded: in spawned processes on this machine (``--workers N``) or on a Ray cluster
(``--ray auto|ADDRESS|local``; Ray: Moritz et al., arXiv 1712.05889). Every GOP codes independently, so the jobs
spread freely; results come back in the order of the jobs, and the bytes are the same wherever they were made.

A worker builds its codec once, from the state the caller hands over (``build(state)``: the tokenizer's config,
weights and the integer prior, sent once — through Ray's object store on a cluster, so the nodes need vtok installed
but not its weights files), then runs ``method(codec, *job)`` for every job sent to it. At most two jobs a worker are
in flight, so the memory of a run is a few GOPs whatever the clip's length. A worker that dies stops the run with one
``WorkerError`` line. ``gop_jobs`` makes the encoder's jobs, one per GOP.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, Iterable, Iterator

import numpy as np

from vtok.bitstream.errors import VtokError
from vtok.codec.media.info import VideoError


class WorkerError(VtokError, RuntimeError):
    """A worker process or Ray actor failed, or Ray is missing or unreachable."""


def run_jobs(build: Callable, state, method: str, jobs: Iterable[tuple], workers: int = 0,
             ray: str | None = None) -> Iterator:
    """``getattr(build(state), method)(*job)`` for every job, in order, in ``workers`` local processes or, with
    ``ray``, in ``workers`` Ray actors (0: one per two CPUs of the cluster)."""
    if ray is not None:
        yield from _on_ray(build, state, method, jobs, workers, ray)
    else:
        yield from _in_processes(build, state, method, jobs, max(1, workers))


def _bounded(submit, get, jobs: Iterable[tuple], workers: int) -> Iterator:
    """Submit jobs round-robin, at most two a worker in flight, and yield their results in order."""
    queue: deque = deque()
    for i, job in enumerate(jobs):
        queue.append(submit(i % workers, job))
        if len(queue) >= 2 * workers:
            yield get(queue.popleft())
    while queue:
        yield get(queue.popleft())


def _in_processes(build, state, method, jobs, workers) -> Iterator:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(build, state, threads)) as pool:
        try:
            yield from _bounded(lambda _, job: pool.submit(_run_in_worker, method, job), lambda f: f.result(),
                                jobs, workers)
        except BrokenProcessPool as e:
            raise WorkerError(f"a worker process died ({e})") from None


_WORKER: dict = {}


def _start_worker(build, state, threads: int) -> None:
    """A worker process's codec, built once."""
    import torch

    torch.set_num_threads(threads)
    _WORKER["codec"] = build(state)


def _run_in_worker(method: str, job: tuple):
    return getattr(_WORKER["codec"], method)(*job)


class RayWorker:
    """A Ray actor holding one codec (made remote where Ray is imported, so that this module does not need Ray)."""

    def __init__(self, build, state, threads: int):
        _start_worker(build, state, threads)

    def run(self, method: str, job: tuple):
        return _run_in_worker(method, job)


def connect_ray(address: str):
    """Ray, connected: ``auto`` (the cluster this machine belongs to, as ``ray start`` made it), an address
    (``ray://HEAD:10001`` or ``HEAD:6379``), or ``local`` (a Ray instance of this machine's CPUs, started here). A Ray
    already initialised in this process is used as it is."""
    try:
        import ray
    except ImportError:
        raise WorkerError("`ray` needs Ray: pip install 'vtok[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR", configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise WorkerError(f"cannot reach the Ray cluster {address!r}: {str(e).splitlines()[0]}") from None
    return ray


def _on_ray(build, state, method, jobs, workers, address) -> Iterator:
    ray = connect_ray(address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors_n = workers if workers > 0 else max(1, cpus // 2)
    node_cpus = max([int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n.get("Alive")] or [1])
    threads = max(1, min(node_cpus, cpus // actors_n))
    share = min(threads, cpus / actors_n)  # more actors than CPUs: fractions, so that every actor is placed
    ref = ray.put(state)
    actors = [ray.remote(num_cpus=share)(RayWorker).remote(build, ref, threads) for _ in range(actors_n)]

    def get(ref):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the job's own error (bad data): raised as it is
            raise e.as_instanceof_cause() from None
        except ray.exceptions.RayError as e:  # an actor or node that died
            raise WorkerError(f"a Ray worker failed ({e.__class__.__name__})") from None

    try:
        yield from _bounded(lambda i, job: actors[i].run.remote(method, job), get, jobs, actors_n)
    finally:
        for actor in actors:
            ray.kill(actor)


def gop_jobs(gops, size: tuple[int, int], coded: tuple[int, int], bits: int, hold: float, search, whole: bool):
    """``Codec.encode_gop``'s jobs for ``gops`` (arrays or iterables of pieces), their frames checked to be ``size``
    ``(height, width)``; ``whole``: a GOP's pieces joined (for workers)."""
    def size_checked(pieces):
        for clip in pieces:
            if clip.shape[1:3] != size:
                raise VideoError(f"frame size changes mid-stream ({clip.shape[2]}x{clip.shape[1]})")
            yield clip

    for clip in gops:
        pieces = size_checked([clip] if isinstance(clip, np.ndarray) else clip)
        yield (np.concatenate(list(pieces)) if whole else pieces), coded, bits, hold, search

