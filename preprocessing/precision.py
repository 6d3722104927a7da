"""Arithmetic of a forward pass, shared by both models: float32, or bfloat16 compute with
float32 weights (Keras' ``mixed_bfloat16`` policy).

bfloat16 is the CPU fast preset (``tools.predict --precision bfloat16``): about a quarter
faster on a CPU with AVX512-BF16 or AMX, emulated and much slower elsewhere (a Mask R-CNN
training step on an AMD EPYC without AVX-512: 111 s against 8.8 s in float32, bench/RESULTS.md).
``'auto'`` (the command lines' choice) is bfloat16 where the CPU computes it natively, else float32. Each model keeps the
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
# what the command lines accept: a precision, or 'auto' (resolve_precision)
PRECISION_CHOICES = PRECISIONS + ("auto",)
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


def resolve_precision(precision: str) -> str:
    """``precision``, with 'auto' made bfloat16 where the CPU computes it natively
    (cpu_has_bfloat16) and float32 elsewhere; a NucleiError for anything else unknown."""
    if precision == "auto":
        return "bfloat16" if cpu_has_bfloat16() else "float32"
    return check_precision(precision)


def emulated_bfloat16_warning(precision: str) -> str | None:
    """A warning for ``precision`` 'bfloat16' on a CPU that emulates it (None otherwise).
    Where a GPU computes, the CPU's flags do not matter: callers check that."""
    if precision != "bfloat16" or cpu_has_bfloat16():
        return None
    return ("warning: this CPU has no native bfloat16 (AVX512-BF16 or AMX): bfloat16 is emulated here, "
            "about 13x slower per Mask R-CNN training step than float32 on an AMD EPYC without AVX-512 "
            "(bench/RESULTS.md); on a CPU use --precision float32 or auto")
