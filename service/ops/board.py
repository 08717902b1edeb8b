"""How many HTTP requests every gunicorn worker has in its engine, seen by all of them.

Camera frames come after HTTP (api/admission.py), but one worker runs the cameras, and with `FACEFLEET_WORKERS`
above 1 the other workers' requests use the same cores through their own engines: that worker's admission must
see them. The board is one page of memory the master maps before it forks the workers (an anonymous shared
mapping: every worker inherits the same page), one slot per worker: its process id and its count of requests
inside or queued for its engine. A worker takes a free slot on its first write (a slot whose process is gone is
free), writes only its own, and reads the others' when a frame asks; the master empties a worker's slot when it
exits (gunicorn's child_exit), so a worker that died mid-request leaves no count behind.

Each slot's fields are aligned 32-bit integers written whole (`struct.pack_into`), which other processes read
without a lock; claiming a slot takes a lock shared by the processes.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import struct

SLOT = struct.Struct("=ii")  # pid, requests in (or queued for) that worker's engine
SLOTS = 128  # far more workers than an appliance runs (each loads its own copy of the models)


class HttpBoard:
    """Every worker's HTTP count, in memory shared across a fork; make it in the master, before the workers."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._slots = slots
        self._memory = mmap.mmap(-1, slots * SLOT.size)  # anonymous and shared: the forked workers see it
        self._claim = multiprocessing.get_context("fork").Lock()
        self._mine: int | None = None
        self._pid = 0  # the process that holds `_mine` (after a fork, the child has none yet)

    def set(self, count: int) -> None:
        """This worker's requests in or queued for its engine now."""
        slot = self._own_slot()
        if slot is not None:
            struct.pack_into("=i", self._memory, slot * SLOT.size + 4, count)

    def others(self) -> int:
        """The requests the other workers have in or queued for their engines."""
        pid, total = os.getpid(), 0
        for slot in range(self._slots):
            owner, count = SLOT.unpack_from(self._memory, slot * SLOT.size)
            if owner and owner != pid:
                total += max(count, 0)
        return total

    def release(self, pid: int) -> None:
        """The worker `pid` exited (the master's child_exit): its slot and its count are gone."""
        with self._claim:
            for slot in range(self._slots):
                if SLOT.unpack_from(self._memory, slot * SLOT.size)[0] == pid:
                    SLOT.pack_into(self._memory, slot * SLOT.size, 0, 0)

    def _own_slot(self) -> int | None:
        pid = os.getpid()
        if self._pid != pid:
            self._mine, self._pid = self._claim_slot(pid), pid
        return self._mine

    def _claim_slot(self, pid: int) -> int | None:
        """A free slot (no process, or one that is gone) taken for `pid`; None when all are held (then this
        worker's requests are not seen by the others: it still runs)."""
        with self._claim:
            for slot in range(self._slots):
                owner, _ = SLOT.unpack_from(self._memory, slot * SLOT.size)
                if owner in (0, pid) or not _alive(owner):
                    SLOT.pack_into(self._memory, slot * SLOT.size, pid, 0)
                    return slot
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds that number: not our worker
        return False
    return True
