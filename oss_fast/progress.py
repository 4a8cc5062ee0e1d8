"""Progress of long phases: a tqdm bar on a terminal; in a log (CI, `| tee`) a few plain lines --
one when a phase ends, and one every half minute while it runs -- not carriage-return frames."""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


class PlainLines:
    """The part of tqdm's interface the phases use, written as plain lines on stderr."""

    def __init__(self, total: int, desc: str, initial: int = 0, every: float = 30.0):
        self.total, self.desc, self.n, self.every = total, desc, initial, every
        self.begin = self.last = time.perf_counter()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every and self.n < self.total:
            self.last = now
            self._line(f"{self.n}/{self.total}, {now - self.begin:.0f} s")

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        self._line(f"{self.n}/{self.total} in {time.perf_counter() - self.begin:.1f} s")

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}{' (' + self.postfix + ')' if self.postfix else ''}", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, *, enabled: bool = True, initial: int = 0):
    """A progress bar for a phase of `total` units (a context manager with update/set_postfix)."""
    if enabled and not sys.stderr.isatty():
        return PlainLines(total, desc, initial)
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, disable=not enabled)
