"""What this CPU can do, for the choices that depend on it (no torch).

Machines differ: bf16 autocast doubles training speed where the CPU computes in bf16
and halves it where it is emulated; static INT8 convolutions saturate on x86 CPUs
without VNNI unless their weights use 7 bits. Every such choice reads the flags here,
and every benchmark prints :func:`describe` beside its figures.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

# the flags that change what we choose or what we measure
NOTABLE = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, every choice takes its safe side
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_vnni() -> bool:
    """INT8 dot products without the 16-bit intermediate that saturates (x86 VNNI; an
    ARM CPU's int8 dot product has no such intermediate either)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def has_native_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def describe() -> str:
    """One line for a benchmark's header: model, cores and the flags that matter."""
    flags = cpu_flags()
    notable = [f for f in NOTABLE if f in flags]
    shown = " ".join(notable) if notable else "none of " + "/".join(NOTABLE)
    return f"{cpu_name()}, {os.cpu_count()} CPUs, flags: {shown}"


def summary() -> dict:
    """The same, for a benchmark's JSON."""
    flags = cpu_flags()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "flags": [f for f in NOTABLE if f in flags],
    }
