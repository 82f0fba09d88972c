"""``annotate --cluster``: the batch on a Ray cluster, one actor per worker CPU (per GPU
with ``--backend cuda`` or ``tensorrt``).

Ray is an optional extra (``pip install -e '.[cluster]'``) and is imported only here,
only when ``--cluster`` is given. Each actor loads the pipeline once and annotates one
file per call with :func:`engine.batch.annotate_one`, the function the local paths use,
writing straight into OUTDIR (a path every worker sees: a shared filesystem on a real
cluster). The driver (this process) hands each idle actor the next file, writes the
manifest line as each file finishes, and merges the table at the end.

Faults: an actor whose process dies is restarted (``max_restarts``) and the call it was
running is retried (``max_task_retries``), on whichever node Ray places the restart;
``annotate_one`` first removes the dead attempt's ``*.part.*`` outputs, and only the
driver records a file, once, when a call returns, so no record is lost or doubled.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Callable, Sequence

from engine.batch import FileResult, FileTask, annotate_one, worker_id, worker_pipeline
from engine.pipeline import PipelineConfig
from engine.providers import GPU_BACKENDS

INSTALL_HINT = "pip install -e '.[cluster]'"
MAX_RESTARTS = 2  # per actor: a file whose worker dies more often than this fails
MAX_TASK_RETRIES = 2


class ClusterError(RuntimeError):
    """Ray is missing, or the cluster cannot be reached; the message says which and what to do."""


def import_ray():
    """Ray, or ClusterError naming the extra. Imported by name so that PyInstaller's import
    scan does not pull Ray (hundreds of MB) into the app's binary, which has no --cluster."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.exceptions")
    except ImportError as e:
        raise ClusterError(f"--cluster needs Ray, which is not installed ({e}); install the extra: "
                           f"{INSTALL_HINT}") from None
    return ray


def connect(address: str) -> bool:
    """Join (``auto``, ``ray://HOST:PORT``) or start (``ray``) a cluster; True when this call
    started or joined it (the caller then shuts it down), False when already connected."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if address == "ray":  # "local": a new cluster even where one is running on this machine
            ray.init(address="local", **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as e:  # noqa: BLE001 - one line, naming the address
        where = "a local Ray cluster" if address == "ray" else f"the Ray cluster at {address}"
        raise ClusterError(f"cannot start or join {where}: {' '.join(str(e).split())}") from None
    return True


class Annotator:
    """A Ray actor: one loaded pipeline, one file per call."""

    def __init__(self, config: PipelineConfig) -> None:
        self.pipeline = worker_pipeline(config)

    def ready(self) -> str:
        return worker_id()

    def annotate(self, task: FileTask) -> FileResult:
        return annotate_one(task, self.pipeline)


def worker_cpus() -> int:
    ray = import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def actor_resources(config: PipelineConfig) -> tuple[dict, int]:
    """What each actor reserves and how many actors the cluster holds: one per GPU (each
    reserving that GPU) with a GPU backend, else one per CPU. A GPU backend on a cluster
    with no GPU is an error in words (ONNX Runtime would refuse it on every worker)."""
    ray = import_ray()
    if config.backend in GPU_BACKENDS:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < 1:
            raise ClusterError(f"--backend {config.backend} asks for GPU workers, but the Ray cluster has no GPU; "
                               "use --backend cpu or auto, or add GPU nodes")
        return {"num_cpus": 1, "num_gpus": 1}, gpus
    return {"num_cpus": 1}, worker_cpus()


def run_on_ray(tasks: Sequence[FileTask], config: PipelineConfig, on_result: Callable[[FileResult], None],
               workers: int | None = None) -> bool:
    """Annotate ``tasks`` on the connected cluster with ``workers`` actors (default: one per
    CPU, at most one per file); ``on_result`` is called here as each file finishes.
    Returns True when interrupted (Ctrl+C / SIGTERM): the actors are killed, the files in
    flight are reported interrupted (their ``*.part.*`` outputs are removed by the next run).
    """
    ray = import_ray()
    RayError = ray.exceptions.RayError

    if not tasks:
        return False
    resources, slots = actor_resources(config)
    n = min(workers or slots, len(tasks))
    remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES, **resources)(Annotator)
    actors = [remote.remote(config) for _ in range(n)]
    queue = list(tasks)
    running: dict = {}  # ObjectRef -> (actor, task)

    def give(actor) -> None:
        if queue:
            task = queue.pop(0)
            running[actor.annotate.remote(task)] = (actor, task)

    try:
        for actor in actors:
            give(actor)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            actor, task = running.pop(ref)
            try:
                result = ray.get(ref)
            except RayError as e:  # retries spent, or the model cannot load on that node
                reason = " ".join(str(e).split())[:300]
                result = FileResult(task.input, task.name, "failed",
                                    error=f"{task.input}: the Ray worker failed ({reason})")
                on_result(result)
                continue  # that actor is gone: its queue share goes to the others
            on_result(result)
            give(actor)
        if queue:  # every actor died
            for task in queue:
                on_result(FileResult(task.input, task.name, "failed",
                                     error=f"{task.input}: no Ray worker left to annotate it"))
        return False
    except KeyboardInterrupt:
        for _, task in running.values():
            on_result(FileResult(task.input, task.name, "interrupted"))
        return True
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
