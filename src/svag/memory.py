"""How much of the machine this process may use, memory and cores: the one owner of those facts (the budget, the
data plug-ins, the loader's and the command line's thread and worker limits ask it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MEMORY_FRACTION", "available_memory", "memory_limit", "usable_cores"]

MEMORY_FRACTION = 0.5  # of the memory this process may use: the data set and the model must fit in it


def available_memory() -> int | None:
    """Bytes of memory this process may use: physical RAM, or a smaller cgroup (container) limit;
    ``None`` when neither can be read."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            sizes.append(int(text))
    return min(sizes) if sizes else None


def memory_limit() -> int | None:
    """:data:`MEMORY_FRACTION` of :func:`available_memory` in bytes (``None``: unknown, not checked)."""
    memory = available_memory()
    return None if memory is None else int(MEMORY_FRACTION * memory)


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity where the system tells it, else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
