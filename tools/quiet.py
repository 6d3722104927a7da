"""TensorFlow's and absl's start-up chatter, hidden in one place (``--verbose`` brings it back).

What a user sees on ``import tensorflow`` (TensorFlow 2.16-2.21, CPU or CUDA build)::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly different ...
    I0000 00:00:... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    E0000 00:00:... cuda_dnn.cc:8310] Unable to register cuDNN factory: ...

C++ writes these straight to file descriptor 2 while TensorFlow's shared libraries load, before
absl's logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide them on TensorFlow 2.21
(it still hides the later C++ INFO and WARNING lines of older versions, so it is set too).
:func:`quiet_tensorflow` therefore catches descriptor 2 during ``import tensorflow`` only, through a
one-shot import hook, drops the known start-up lines, and writes every other line (a real error)
back to stderr; if the import fails, everything it wrote comes back unfiltered. oneDNN itself stays
on (``TF_ENABLE_ONEDNN_OPTS`` is left alone: turning it off would change the numbers slightly).

Python's side: the ``absl`` and ``tensorflow`` loggers show errors only, and warnings raised inside
keras / tensorflow / absl are ignored. :func:`verbose_tensorflow` undoes all of it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator

# absl's C++ line: severity letter, MMDD, hh:mm:ss.micros (before absl is set up: 00:00:<epoch
# seconds>), thread id, file:line]
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+\S+:\d+\] (.*)$")
# E-level lines at start-up that are noise, not errors: CUDA plugins registering a factory twice,
# a oneDNN note. GPU problems (cuInit failures) are not among them: they still show.
_KNOWN_ERRORS = re.compile(
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"oneDNN supports DT_INT64 only|could not open file to read NUMA node")
_PLAIN_CHATTER = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$|"
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$|"
    r"^WARNING: Logging before InitGoogleLogging\(\) is written to STDERR$|"
    r"^TF-TRT Warning: ")
_NOISY_PACKAGES = r"(keras|tensorflow|tf_keras|absl|google\.protobuf)(\.|$)"

_hook: "_QuietImportHook | None" = None


def is_chatter(line: str) -> bool:
    """True for a TensorFlow / absl start-up line (INFO and WARNING lines of absl's C++ format,
    the absl pre-initialisation notice, the CPU-instructions note, known CUDA-plugin errors)."""
    line = line.rstrip("\r\n")
    if _PLAIN_CHATTER.match(line):
        return True
    match = _ABSL_LINE.match(line)
    if match is None:
        return False
    return match.group(1) in "IW" or bool(_KNOWN_ERRORS.search(match.group(2)))


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Catch what anything (C++ included) writes to file descriptor 2 inside the block; afterwards
    write back each line that is not :func:`is_chatter` (all of them if the block raised).

    Does nothing where descriptor 2 cannot be duplicated (no stderr at all).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = lines if failed else [line for line in lines if not is_chatter(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader's ``exec_module`` inside :func:`filtered_native_stderr`."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the module keeps its own loader
        with filtered_native_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _QuietImportHook(importlib.abc.MetaPathFinder):
    """A one-shot finder: the first ``import tensorflow`` runs under :func:`filtered_native_stderr`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or path is not None:
            return None
        _remove_hook()
        spec = importlib.machinery.PathFinder.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove_hook() -> None:
    global _hook
    if _hook is not None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(_hook)
        _hook = None


def quiet_tensorflow() -> None:
    """Hide TensorFlow's start-up chatter from here on; call before ``import tensorflow`` (or keras).

    A ``TF_CPP_MIN_LOG_LEVEL`` the user set wins. Once TensorFlow is imported, only the Python side
    (loggers, warnings) can still be quietened.
    """
    global _hook
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_NOISY_PACKAGES)
    if "tensorflow" not in sys.modules and _hook is None:
        _hook = _QuietImportHook()
        sys.meta_path.insert(0, _hook)


def verbose_tensorflow() -> None:
    """Let everything through: TensorFlow's C++ INFO lines, the start-up lines, absl / tensorflow
    INFO logs, every warning (once per place)."""
    _remove_hook()
    if "tensorflow" not in sys.modules:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.INFO)
    warnings.simplefilter("default")
