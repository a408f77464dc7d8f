"""The progress bar of LLM.generate: tqdm when it is installed (as vLLM), else a plain counter on
stderr, redrawn at most a few times a second."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Union


class _PlainBar:
    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self._drawn = total, desc, 0, 0.0
        self._draw(force=True)

    def update(self, k: int) -> None:
        self.n += k
        self._draw(force=self.n >= self.total)

    def _draw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        width = 30
        filled = width * self.n // max(self.total, 1)
        sys.stderr.write(f"\r{self.desc}: [{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def make_bar(use_tqdm: Union[bool, Callable[..., Any]], total: int, desc: str) -> Optional[Any]:
    """A bar with update(k) and close(), or None when use_tqdm is false."""
    if not use_tqdm:
        return None
    if callable(use_tqdm):  # vLLM accepts a tqdm-like class
        return use_tqdm(total=total, desc=desc)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, dynamic_ncols=True)
