"""The daemon's freed memory, given back to the system after the request that grew it.

What Python and SQLite free goes back to glibc's heap, which keeps it for
reuse: the RSS stays at the high-water mark of the biggest request. Listing
1,000 containers (`ps -a`: every row read, a summary each, one JSON body)
took some 7 MB for a moment, and the idle daemon kept MBs of it: in a lab,
one `ps -a` of 300 containers left 1.5 MB; bench/scale.py, whose inventory
lists its 1,000, measured 49.3 MB with them running and 53.0 MB once all
were removed. (What Python's own allocator keeps, arenas pinned by a few
live objects, is not glibc's to give back: ps makes less of it, per row.)

After each request, `after_request` reads the RSS (one pread of
/proc/self/statm); when it is GROWTH above where the last release was made
(a new high), SQLite's unused cache is freed and malloc_trim(0) hands the
free heap back. The hot path grows the RSS by a few kB a container: it pays
the read, and a release about every hundred containers (some 0.2 ms, after
the answer went out).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable

GROWTH = 1 << 20  # bytes of RSS grown since the last release that make the next one
PAGE = os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (another C library: the heap keeps what it keeps)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class MemoryRelease:
    def __init__(self, release_caches: Callable[[], object]) -> None:
        self._release_caches = release_caches
        self._trim = _malloc_trim()
        self._lock = threading.Lock()
        self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        self._floor = self.rss()

    def rss(self) -> int:
        """The process's resident set, in bytes."""
        return int(os.pread(self._statm, 100, 0).split()[1]) * PAGE

    def after_request(self) -> None:
        """Release what the heap keeps when the RSS grew by GROWTH since the last release."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is releasing right now
        try:
            now = self.rss()
            if now - self._floor < GROWTH:
                return
            self._release()
            # The next release needs a new high: what this one gave back of the working set
            # (the pages the next requests touch again) comes back, and is no reason for another.
            self._floor = now
        except OSError:
            pass  # statm closed: the daemon is stopping
        finally:
            self._lock.release()

    def _release(self) -> None:
        self._release_caches()
        if self._trim is not None:
            self._trim(0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._statm)
