"""What the processes serving one data directory share of the derived cache, in shared memory.

Counters (hits, misses, computations, puts, deletes) in one row per process, and
which cache files have been checked against their checksums since the start.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import struct
import threading
from collections.abc import Iterator

import numpy as np

#: The counters of a row, by index.
HITS, MISSES, COMPUTATIONS, PUTS, DELETES = range(5)
_COUNTERS = 5


class SharedCacheState:
    """What the processes serving one data directory share of the derived cache, in shared memory.

    - Counters: each process adds to its own row (``row``) and
      :meth:`DerivedCache.stats` sums the rows, so that any process answers for all.
    - Which cache files have been read whole and found to match their checksums since
      the start (``verified``/``mark_verified``): a volume's file is then checked once,
      not once per process. A table of 128-bit digests with open addressing; a full
      table or two writers racing for a slot only cost a check more.

    Made by the parent before it starts the processes and handed to each (it
    pickles only into a process being started).

    Parameters
    ----------
    processes:
        Rows of counters: one per process.
    initial_entries:
        Entries on disk when the cache was opened (evictions are counted from there).
    stamps:
        Slots of the table of verified files.
    """

    def __init__(self, processes: int = 1, *, initial_entries: int = 0, stamps: int = 4096) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.processes = processes
        self._raw = multiprocessing.RawArray("q", processes * _COUNTERS + 1)
        self._raw[processes * _COUNTERS] = initial_entries
        self._stamps = multiprocessing.RawArray("Q", 2 * stamps)

    @property
    def initial_entries(self) -> int:
        return int(self._raw[self.processes * _COUNTERS])

    def row(self, index: int) -> memoryview:
        """Process ``index``'s counters (hits, misses, computations, puts, deletes), a writable view.

        A memoryview of int64: adding to one of its items costs a third of a numpy element's.

        Raises
        ------
        ValueError
            If there is no such row.
        """
        if not 0 <= index < self.processes:
            raise ValueError(f"row {index} of {self.processes}")
        return memoryview(self._raw).cast("B").cast("q")[index * _COUNTERS : (index + 1) * _COUNTERS]

    def totals(self) -> np.ndarray:
        """Each counter summed over the processes."""
        rows = np.frombuffer(self._raw, dtype=np.int64, count=self.processes * _COUNTERS).reshape(-1, _COUNTERS)
        sums: np.ndarray = rows.sum(axis=0)
        return sums

    def _slots(self, stamp: tuple[str, str]) -> Iterator[tuple[np.ndarray, int, int]]:
        digest = hashlib.blake2b("\0".join(stamp).encode(), digest_size=16).digest()
        hi, lo = struct.unpack("<QQ", digest)
        hi |= 1  # never the empty slot's (0, 0)
        table = np.frombuffer(self._stamps, dtype=np.uint64).reshape(-1, 2)
        start = lo % len(table)
        for k in range(min(32, len(table))):
            yield table[(start + k) % len(table)], hi, lo

    def verified(self, stamp: tuple[str, str]) -> bool:
        """Whether some process marked ``stamp`` (path, checksum) verified."""
        for slot, hi, lo in self._slots(stamp):
            if slot[0] == hi and slot[1] == lo:
                return True
            if slot[0] == 0:
                return False
        return False

    def mark_verified(self, stamp: tuple[str, str]) -> None:
        for slot, hi, lo in self._slots(stamp):
            if slot[0] == 0 or (slot[0] == hi and slot[1] == lo):
                slot[1] = lo
                slot[0] = hi
                return


class Counters:
    """One process's row of the shared counters, added to under a lock (its threads share the row).

    Parameters
    ----------
    state:
        The counters of every process serving the directory.
    process:
        This process's row.

    Raises
    ------
    ValueError
        If ``process`` is not a row of ``state``.
    """

    def __init__(self, state: SharedCacheState, process: int) -> None:
        self._row = state.row(process)
        self._lock = threading.Lock()

    def add(self, counter: int, n: int = 1) -> None:
        """Add ``n`` to ``counter`` (:data:`HITS`, :data:`MISSES`, ...)."""
        with self._lock:
            self._row[counter] += n


__all__ = ["COMPUTATIONS", "DELETES", "HITS", "MISSES", "PUTS", "Counters", "SharedCacheState"]
