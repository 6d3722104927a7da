"""Progress bars for every loop over images, with one switch for all of them.

``progress(items, "predicting")`` is a tqdm bar (count, images/s, elapsed < ETA) on a terminal
and the plain iterable elsewhere: tqdm's ``disable=None`` turns it off when stderr is not a
terminal (logs, CI, pytest), and ``set_enabled(False)`` (the commands' ``--quiet``, set by
:func:`tools.cli.run_command`) turns every bar off.
"""

from __future__ import annotations

from typing import IO, Iterable, TypeVar

T = TypeVar("T")

# images/s always (tqdm would switch to s/image below one image a second), and the ETA
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turn every progress bar of this process on (the default; still only on a terminal) or off."""
    global _enabled
    _enabled = bool(enabled)


def enabled() -> bool:
    """Whether progress bars may show (False after ``--quiet``)."""
    return _enabled


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "img",
             file: IO[str] | None = None) -> Iterable[T]:
    """``iterable`` with a progress bar named ``desc`` on stderr (or ``file``) when that is a terminal.

    ``total`` defaults to ``len(iterable)`` where it has one (no bar length otherwise).
    """
    if not _enabled:
        return iterable
    from tqdm import tqdm

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=file, disable=None, dynamic_ncols=True,
                bar_format=BAR_FORMAT if total is not None else None)
