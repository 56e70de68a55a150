"""The numerical fingerprint: what decides the last bits of a result on this machine.

Two runs of the same code on the same data give the same bytes when everything here matches: the CPU (vendor,
family, model, stepping) and the vector instructions the numerical libraries pick from it (numpy's SIMD
dispatch, OpenBLAS's kernel, XLA's code generation), the BLAS library and its threads, the environment variables
that move a library off its default path, the libraries' versions, and on a GPU its model, driver and CUDA.
`make verify` compares fingerprints: equal ones must reproduce bit for bit, others must reproduce the
conclusions (quest.evaluation.reproduction).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import subprocess
from collections.abc import MutableMapping
from importlib import metadata

from quest.core.host import cpuinfo

# Environment variables that change a numerical library's path (kernel, vector width, threads, precision).
NUMERICAL_ENV = (
    "XLA_FLAGS",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "JAX_ENABLE_X64",
    "JAX_DEFAULT_MATMUL_PRECISION",
    "NVIDIA_TF32_OVERRIDE",
    "CUBLAS_WORKSPACE_CONFIG",
)
# The packages whose versions decide the bits (a drift from the lock in any of them is a new numerical path).
NUMERICAL_PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "jax",
    "jaxlib",
    "keras",
    "tensorflow",
    "xgboost-cpu",
    "xgboost",
    "lightgbm",
    "catboost",
    "jax-cuda12-plugin",
    "nvidia-cuda-runtime-cu12",
    "nvidia-cudnn-cu12",
    "nvidia-cublas-cu12",
)
# /proc/cpuinfo flags naming the vector and fused-multiply-add units the libraries dispatch on.
VECTOR_FLAG = re.compile(r"^(sse4_[12]|avx\w*|fma4?|f16c|amx\w*)$")
# numpy's SIMD targets above AVX2 (X86_V3), each with the /proc/cpuinfo flags it needs: numpy's own list of
# what it dispatches to (numpy._core._multiarray_umath.__cpu_dispatch__, numpy 2.4).
NUMPY_ABOVE_AVX2 = {
    "X86_V4": {"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"},
    "AVX512_ICL": {"avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512ifma"},
    "AVX512_SPR": {"avx512_fp16"},
}


def cpu() -> dict[str, object]:
    """Vendor, family, model, stepping and name of the first CPU, and its vector instruction sets."""
    fields = cpuinfo()
    return {
        "vendor": fields.get("vendor_id", platform.processor() or "unknown"),
        "family": fields.get("cpu family", ""),
        "model": fields.get("model", ""),
        "stepping": fields.get("stepping", ""),
        "name": fields.get("model name", platform.processor() or platform.machine()),
        "vector": sorted(flag for flag in fields.get("flags", "").split() if VECTOR_FLAG.match(flag)),
    }


def numpy_at_most_avx2(environ: MutableMapping[str, str], flags: set[str]) -> str | None:
    """Cap numpy's SIMD dispatch at AVX2 in `environ` on a CPU with AVX-512 (`flags`: /proc/cpuinfo's), unless
    the user chose numpy's features already; returns what it set, or None.

    numpy's exp, log, log1p, expm1, arctan and float sums have AVX-512 loops that round the last bit otherwise
    than the AVX2 ones: the classic models' log losses differed by 1e-17 between an AVX2 and an AVX-512 EPYC.
    At AVX2 they are bit-identical (measured on the default run), and the pipeline spends milliseconds in those
    loops. Only targets the CPU has are named: naming another makes numpy warn at import."""
    if "NPY_DISABLE_CPU_FEATURES" in environ or "NPY_ENABLE_CPU_FEATURES" in environ:
        return None
    above, needed = [], set()
    for target, wanted in NUMPY_ABOVE_AVX2.items():
        needed |= wanted
        if needed <= flags:
            above.append(target)
    if not above:
        return None
    environ["NPY_DISABLE_CPU_FEATURES"] = " ".join(above)
    return environ["NPY_DISABLE_CPU_FEATURES"]


def blas() -> list[dict[str, object]]:
    """Each BLAS numpy and scipy load, with the kernel it picked for this CPU and its threads (threadpoolctl)."""
    import numpy  # noqa: F401  (threadpoolctl reports only the libraries already loaded)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    found = [
        {
            "library": entry.get("internal_api"),
            "version": entry.get("version"),
            "kernel": entry.get("architecture"),
            "threads": entry.get("num_threads"),
            "threading": entry.get("threading_layer"),
            "file": os.path.basename(str(entry.get("filepath", ""))).split("-")[0],
        }
        for entry in threadpool_info()
        if entry.get("user_api") == "blas"
    ]
    return sorted(found, key=lambda entry: str(entry["file"]))


def numpy_simd() -> list[str]:
    """The SIMD targets numpy's ufuncs dispatch to on this CPU (exp, log, tanh... differ in the last bit)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # a numpy without runtime dispatch
        return []
    return [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]


def gpus() -> list[dict[str, str]]:
    """Every NVIDIA GPU's model and driver, from nvidia-smi; empty where there is none."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    rows = [line.split(",") for line in done.stdout.splitlines() if line.strip()]
    return [{"name": row[0].strip(), "driver": row[-1].strip()} for row in rows]


def versions(names: tuple[str, ...] = NUMERICAL_PACKAGES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def numerical_fingerprint() -> dict[str, object]:
    """This process's numerical fingerprint (computed once): what must match for two runs to give the same bits."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libc = " ".join(platform.libc_ver()).strip()
    return {
        "cpu": cpu(),
        "numpy_simd": numpy_simd(),
        "blas": blas(),
        "threads": {"cpus": os.cpu_count(), "usable": usable},
        "env": {name: os.environ[name] for name in NUMERICAL_ENV if name in os.environ},
        "gpus": gpus(),
        "libc": libc,
        "versions": versions(),
    }


def fingerprint_id(numerics: dict[str, object]) -> str:
    """A short, stable name for a fingerprint: the first 12 hex digits of its canonical JSON's SHA-256."""
    return hashlib.sha256(json.dumps(numerics, sort_keys=True).encode()).hexdigest()[:12]


def summary(numerics: dict[str, object]) -> str:
    """One line for a person: `AuthenticAMD family 25 model 17 stepping 1 (AMD EPYC), AVX-512, OpenBLAS SkylakeX`."""
    found = numerics.get("cpu") or {}
    vector = set(found.get("vector", []))
    widest = "AVX-512" if any(f.startswith("avx512") for f in vector) else "AVX2" if "avx2" in vector else "no AVX2"
    kernels = sorted({str(entry.get("kernel")) for entry in numerics.get("blas", [])})
    gpu = "; ".join(f"{g['name']} (driver {g['driver']})" for g in numerics.get("gpus", []))
    return (
        f"{found.get('vendor', '?')} family {found.get('family', '?')} model {found.get('model', '?')} "
        f"stepping {found.get('stepping', '?')} ({found.get('name', '?')}), {widest}, "
        f"BLAS {'/'.join(kernels) or 'none'}" + (f", GPU {gpu}" if gpu else "")
    )


def differences(committed: dict | None, fresh: dict | None) -> list[str]:
    """What differs between two fingerprints, one short phrase each (`cpu.model 1 -> 17`, `cpu.vector +avx512f`);
    empty when they match. A missing fingerprint differs in everything."""
    if not committed or not fresh:
        return [f"the {'committed' if not committed else 'recomputed'} results record no numerical fingerprint"]
    return list(_diff("", committed, fresh))


def _diff(prefix: str, a: object, b: object):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                yield from _diff(f"{prefix}.{key}" if prefix else str(key), a.get(key), b.get(key))
    elif isinstance(a, list) and isinstance(b, list) and all(isinstance(x, str) for x in a + b):
        added = [x for x in b if x not in a]
        removed = [x for x in a if x not in b]
        yield f"{prefix} " + " ".join([*(f"+{x}" for x in added), *(f"-{x}" for x in removed)])
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                yield from _diff(f"{prefix}[{index}]", x, y)
    else:
        yield f"{prefix} {_short(a)} -> {_short(b)}"


def _short(value: object) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value
