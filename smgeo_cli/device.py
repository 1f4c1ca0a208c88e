"""Choosing the torch device and CPU threads.

torch is imported by the functions that use it, so that the command line's
option parsing (which needs ``DEVICE_CHOICES``) stays fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from smgeo_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    import torch

    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise UsageError(f"--device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible to torch; use --device cpu")
    return torch.device(name)


def set_cpu_threads(processes_per_machine: int = 1) -> None:
    """Share the machine's cores between local processes (torchrun ranks) unless the user chose."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // max(1, processes_per_machine)))
