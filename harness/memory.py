"""Peak memory of a running stack: the summed RSS of process trees, sampled in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil


class PeakMemory:
    """Samples the summed RSS of the trees rooted at ``root_pids()``: ``baseline`` at the start, ``peak``
    the most above it.

    :param root_pids: the trees' roots, asked at each sample (services may start during the measurement).
    :param interval: seconds between samples.
    """

    def __init__(self, root_pids: Callable[[], list[int]], interval: float = 0.2) -> None:
        self.root_pids, self.interval, self.peak = root_pids, interval, 0
        self._stop = threading.Event()
        self.baseline = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for pid in self.root_pids():
            try:
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.baseline)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
