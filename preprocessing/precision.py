"""Arithmetic of a forward pass, shared by both models: float32, or bfloat16 compute with
float32 weights (Keras' ``mixed_bfloat16`` policy).

bfloat16 is the CPU fast preset (``tools.predict --precision bfloat16``): about a quarter
faster on a CPU with AVX512-BF16 or AMX, emulated and slower elsewhere. Each model keeps the
arithmetic that needs float32 in float32 (the U-Net's softmax; the Mask R-CNN's anchors,
proposals, box decoding and scores): only the layers built inside :func:`compute_policy`
compute in bfloat16. Weights are float32 either way, so the same files load under both.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from preprocessing.errors import NucleiError

PRECISIONS = ("float32", "bfloat16")
# Keras dtype policy of each precision's layers.
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of PRECISIONS, else a NucleiError naming the choices."""
    if precision not in PRECISIONS:
        raise NucleiError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision


@contextmanager
def compute_policy(precision: str) -> Iterator[None]:
    """Layers created inside compute in ``precision`` (Keras' dtype policy is global: the
    previous one is restored on leaving, also after an error)."""
    import keras

    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def cpu_has_bfloat16() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere
    bfloat16 is emulated and slower than float32. False when it cannot tell (not Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
