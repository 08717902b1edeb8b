"""The engine's admission hands slots out in arrival order: a request arriving as a slot is freed never
takes it from one already waiting (with a plain semaphore it could, and the waiter lost its turn)."""

from __future__ import annotations

import threading
import time

from facefleet.api.admission import FifoSlots


def waiting(slots: FifoSlots, count: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if slots.waiting == count:
            return True
        time.sleep(0.005)
    return False


def test_a_freed_slot_goes_to_the_oldest_waiter_not_to_a_newcomer():
    slots = FifoSlots(1)
    assert slots.acquire()
    order: list[int] = []

    def wait_turn(i: int) -> None:
        assert slots.acquire(timeout=30)
        order.append(i)
        slots.release()

    threads = [threading.Thread(target=wait_turn, args=(i,)) for i in range(3)]
    for count, thread in enumerate(threads, 1):
        thread.start()
        assert waiting(slots, count)
    slots.release()
    assert not slots.acquire(blocking=False)  # the newcomer does not barge in ahead of the three
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2]
    assert slots.acquire(blocking=False)  # and the slot is free again once they are done


def test_a_waiter_that_times_out_leaves_the_queue():
    slots = FifoSlots(1)
    assert slots.acquire()
    start = time.monotonic()
    assert not slots.acquire(timeout=0.05)
    assert time.monotonic() - start >= 0.05
    slots.release()
    assert slots.acquire(blocking=False)
