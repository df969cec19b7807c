"""One BLAS kernel family on every x86-64 machine, so NumPy's results are the same bytes on each.

OpenBLAS picks its matrix kernels by CPU (SkylakeX where AVX-512 is present, Haswell or Zen where
only AVX2 is); each kernel sums in its own order, so float32 products differ in the last bits, and SGD
carries that into every later epoch: the NumPy MLP's curve differed from epoch 1 between two machines.
The Haswell kernels run on every x86-64 CPU with AVX2 and FMA (Intel since 2013, AMD since 2015), so
pinning them makes NumPy, and everything built on it here (the MLP, PCA, t-SNE), machine-independent
among those. The variable is read when OpenBLAS loads, so a process that loaded it otherwise
re-executes itself once with the pin set.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

CORETYPE = "Haswell"
_VAR = "OPENBLAS_CORETYPE"


def cpu_field(name: str) -> str:
    """One field of the first CPU in /proc/cpuinfo (`flags`, `model name`); empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    line = next((l for l in text.splitlines() if l.split(":")[0].strip() == name), "")
    return line.partition(":")[2].strip()


def cpu_name() -> str:
    """The CPU's model, as runs on different machines are told apart by."""
    return cpu_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set(cpu_field("flags").split())


def pinnable() -> bool:
    """x86-64 with AVX2 and FMA: elsewhere (ARM, very old CPUs) no shared kernel exists to pin."""
    return platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma"} <= cpu_flags()


def pin_environment() -> None:
    """Set the pin for this process (if OpenBLAS is not loaded yet) and for every child it starts."""
    if pinnable():
        os.environ.setdefault(_VAR, CORETYPE)


def blas_architectures() -> set[str]:
    """The kernel family of every OpenBLAS loaded (NumPy and SciPy each bring their own)."""
    from threadpoolctl import threadpool_info

    return {i["architecture"] for i in threadpool_info() if i.get("internal_api") == "openblas" and i.get("architecture")}


def ensure() -> None:
    """Re-execute the running script once if any OpenBLAS it loaded has another kernel family.

    Every library is checked, not the first listed: threadpoolctl's order follows Python's string
    hashing, so NumPy's unpinned OpenBLAS was missed in some runs whenever SciPy's pinned one was
    already loaded, and the t-SNE stages' results changed from run to run.
    """
    if not pinnable() or os.environ.get(_VAR, CORETYPE) != CORETYPE:
        return  # nothing to pin to, or the user chose another kernel on purpose
    if "numpy" in sys.modules and blas_architectures() - {CORETYPE}:
        if os.environ.get("LATENTLAB_REEXECUTED"):
            return
        env = dict(os.environ, **{_VAR: CORETYPE, "LATENTLAB_REEXECUTED": "1"})
        sys.stdout.flush(), sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def limit_threads(n: int) -> None:
    """Give torch and every BLAS/OpenMP pool of this process (and its children) `n` threads.

    The count comes from params, never from the core count or from how many stages run at once, so a
    result's bytes follow from its params alone. It also keeps a stage steady beside other work: on a
    2-core machine, torch's two OpenMP threads wait on each other at every operation, and one busy core
    made an epoch of the wide MNIST autoencoder 3x slower on two threads, against 1.1x on one.
    """
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    threadpool_limits(limits=n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
