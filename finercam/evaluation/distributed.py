"""The process group of a run and where its model sits.

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1) :func:`joined_group` initialises the
process group (gloo on CPU, nccl on GPU) unless the caller already did; :func:`placed` puts the
model in eval mode on the run's device (under nccl, this rank's GPU) and gives it back as it was.

>>> with joined_group(None) as group:
...     group.rank, group.world, group.union([3, 1])
(0, 1, [3, 1])
"""
from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from typing import Any

import torch

from .model import EvaluationInputError

__all__ = ["Group", "joined_group", "placed"]


@dataclass
class Group:
    """The process group of a run: ``dist`` is None for a single process."""

    dist: Any = None
    rank: int = 0
    world: int = 1

    def barrier(self) -> None:
        if self.dist is not None:
            self.dist.barrier()

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order."""
        if self.dist is None:
            return [value]
        out = [None] * self.world
        self.dist.all_gather_object(out, value)
        return out

    def union(self, values: list) -> list:
        """Every rank's ``values``, concatenated in rank order."""
        return [v for part in self.gather(values) for v in part]


@contextlib.contextmanager
def joined_group(device):
    """The process group: the caller's, a new one under torchrun (``WORLD_SIZE`` > 1; gloo on
    CPU, nccl on GPU; destroyed on exit) or none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        yield Group(dist, dist.get_rank(), dist.get_world_size())
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        yield Group()
        return
    use_nccl = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if use_nccl:  # nccl's collectives (all_gather_object included) use the current device
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_nccl else "gloo")
    try:
        yield Group(dist, dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def placed(net, device, group: Group):
    """The model in eval mode on ``device`` (under nccl: this rank's GPU) for the run; yields
    the device of its parameters. Its modes and its device are restored afterwards."""
    place = device
    if place is None and group.dist is not None and torch.cuda.is_available() \
            and group.dist.get_backend() == "nccl":
        place = f"cuda:{int(os.environ.get('LOCAL_RANK', group.rank))}"
    modes = {m: m.training for m in net.modules()}
    home = None
    try:
        home = _home_device(net, place is not None)
        if place is not None:
            net.to(place)
        net.eval()
        yield next(iter(net.parameters()), torch.zeros(0)).device
    finally:
        for m, flag in modes.items():
            m.training = flag
        if place is not None and home is not None:
            net.to(home)  # the caller's model goes back where it was


def _home_device(net, moving: bool):
    """The one device holding the model's parameters and buffers (None for a model without any);
    a model spread over several devices is not moved."""
    devices = {t.device for t in itertools.chain(net.parameters(), net.buffers())}
    if moving and len(devices) > 1:
        raise EvaluationInputError(f"device: the model is spread over {sorted(map(str, devices))}; place it "
                         "yourself and leave device=None")
    return next(iter(devices)) if len(devices) == 1 else None
