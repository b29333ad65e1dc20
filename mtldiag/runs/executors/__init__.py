"""Where a comparison's (method, seed) runs execute: one after another in this process
(:class:`SerialExecutor`), in N fresh worker processes on this machine (:class:`PoolExecutor`),
or as Ray tasks on a cluster (:class:`RayExecutor`). Every executor hands each finished run
back to the parent process, the only writer of the run directory."""

from mtldiag.runs.executors.base import Executor, OnDone
from mtldiag.runs.executors.devices import worker_devices
from mtldiag.runs.executors.pool import PoolExecutor
from mtldiag.runs.executors.ray_tasks import RayExecutor
from mtldiag.runs.executors.serial import SerialExecutor

__all__ = ["Executor", "OnDone", "PoolExecutor", "RayExecutor", "SerialExecutor", "worker_devices"]
