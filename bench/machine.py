"""Facts about the machine a benchmark ran on, and the command line that reproduces it."""

from __future__ import annotations

import os
import platform
import shlex
import sys

import psutil


def command_line() -> str:
    """The command that reproduces this run (`python -m bench.x --flags`)."""
    module = sys.modules["__main__"].__spec__
    head = f"python -m {module.name}" if module else shlex.join([sys.executable, sys.argv[0]])
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def facts() -> str:
    """Cores, memory, Python and load: enough to judge whether two runs compare."""
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.1f} GiB RAM, Python {platform.python_version()}, "
        f"load average {load_average()}"
    )


def tree_rss(pid: int) -> int:
    """Resident memory in bytes of a process and all its descendants (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue  # a gunicorn worker being recycled
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
