"""How much memory a device has free, and the one-line refusal of an allocation that would not fit.

Shared by the search engine (its estimate of a search's buffers, engine/memory.py) and the bundled
models (their noises): both lie above this layer, neither may import the other.

* CPU: the smaller of MemAvailable (/proc/meminfo; elsewhere the free pages os.sysconf reports) and
  what the process's cgroup (v2 memory.max, v1 limit_in_bytes) still allows.
* CUDA: torch.cuda.mem_get_info's free bytes plus what PyTorch's caching allocator holds unused.
"""

from __future__ import annotations

import os

import torch

_CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                 ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:  # small kernel files: one bounded read
            text = f.read(64).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _cpu_available() -> int | None:
    found = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f.read(1 << 16).decode(errors="replace").splitlines():
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        found = None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for limit_file, usage_file in _CGROUP_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # "max" or a huge number: none
            found = min(found, max(0, limit - usage))
            break
    return found


def available_bytes(device) -> int | None:
    """Bytes a new allocation on `device` can take now, None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cpu":
        return _cpu_available()
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return None


def gib(n: float) -> str:
    """A byte count in GiB (or MiB below one GiB), as messages print it."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_fits(need: int, device, what: str, fix: str, available: int | None = None) -> None:
    """ValueError (one line) if `need` bytes on `device` exceed what is available (given, or read
    now); nothing when the device cannot tell."""
    free = available_bytes(device) if available is None else available
    if free is not None and need > free:
        raise ValueError(f"{what} needs about {gib(need)} of {torch.device(device).type.upper()} memory but "
                         f"{gib(free)} are available: {fix}")
