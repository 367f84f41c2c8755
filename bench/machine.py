"""The machine a run was measured on: CPU, cores, memory, disk, Python, SQLite, packages."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from typing import Any

PACKAGES = (
    "orchestrate-ai",
    "structlog",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "apache-burr",
    "dbos",
    "sqlalchemy",
)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _mount_of(path: str) -> dict[str, Any]:
    """Device and filesystem type of the mount holding ``path`` (Linux)."""
    path = os.path.realpath(path)
    best: tuple[str, str, str] = ("", "", "")
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], parts[1], parts[2]
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[1]):
            best = (device, mount, fstype)
    device, mount, fstype = best
    info: dict[str, Any] = {"device": device, "mount": mount, "filesystem": fstype}
    name = os.path.basename(device)
    rotational = _read(f"/sys/block/{name}/queue/rotational").strip()
    if rotational:
        info["rotational"] = rotational == "1"
    try:
        usage = shutil.disk_usage(path)
        info["size_gib"] = round(usage.total / 2**30)
    except OSError:
        pass
    return info


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    """Everything that makes numbers from this machine comparable (or not) with others."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "disk": _mount_of(tempfile.gettempdir()),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {name: _version(name) for name in PACKAGES},
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
