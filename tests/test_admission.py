"""The engine's admission hands slots out in arrival order: a request arriving as a slot is freed never
takes it from one already waiting (with a plain semaphore it could, and the waiter lost its turn). Camera
frames come after HTTP: by default only while no request is in the engine (this worker's or, through the
shared board, another worker's), never in the last free slot, never before a queued request, and cameras in
the order they asked."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from facefleet.api.admission import Admission, FifoSlots
from facefleet.ops.board import HttpBoard


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


# ---------------------------------------------------------------- camera frames after HTTP (Admission.try_enter)
def http_inside(admission: Admission, entered: threading.Event, release: threading.Event) -> threading.Thread:
    """An HTTP request that holds a slot until `release` is set."""

    def hold() -> None:
        with admission.slot("extract"):
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(10)
    return thread


def test_a_frame_waits_for_the_http_request_to_leave_the_engine_then_enters():
    admission = Admission(2, 4, 5.0)  # two slots: one is free, yet a request is inside
    entered, release = threading.Event(), threading.Event()
    request = http_inside(admission, entered, release)
    start = time.monotonic()
    assert not admission.try_enter(0.1)  # idle share: not beside a request, shed after its wait
    assert time.monotonic() - start >= 0.1
    threading.Timer(0.1, release.set).start()
    assert admission.try_enter(5.0)  # the request left within the frame's wait: in
    request.join(10)
    admission.leave()


def test_free_slot_lets_a_frame_run_beside_a_request_but_never_takes_the_last_slot():
    admission = Admission(3, 4, 5.0, stream_share="free-slot")
    entered, release = threading.Event(), threading.Event()
    request = http_inside(admission, entered, release)
    assert admission.try_enter(0.0)  # beside the request
    assert not admission.try_enter(0.05)  # two of three slots taken: the last is left to HTTP
    with admission.slot("extract") as queued:  # and HTTP finds it at once
        assert queued < 0.05
    release.set()
    request.join(10)
    assert admission.try_enter(0.0)  # the request gone, a second frame fits beside the first
    assert not admission.try_enter(0.0)  # but not a third: frames never hold the last free slot
    admission.leave()
    admission.leave()


def test_a_queued_request_goes_before_any_frame():
    admission = Admission(1, 4, 5.0, stream_share="free-slot")
    entered, release = threading.Event(), threading.Event()
    first = http_inside(admission, entered, release)
    second_in = threading.Event()

    def queued_request() -> None:
        with admission.slot("extract"):
            second_in.set()

    second = threading.Thread(target=queued_request)
    second.start()
    assert waiting(admission._slots, 1)
    frame: list[bool] = []
    camera = threading.Thread(target=lambda: frame.append(admission.try_enter(5.0)))
    camera.start()
    time.sleep(0.05)
    release.set()
    assert second_in.wait(10)  # the queued request took the freed slot, not the frame that waited meanwhile
    camera.join(10)
    first.join(10)
    second.join(10)
    assert frame == [True]  # then the frame came in
    admission.leave()


def test_cameras_get_the_engine_in_the_order_they_asked():
    admission = Admission(2, 4, 5.0)
    entered, release = threading.Event(), threading.Event()
    request = http_inside(admission, entered, release)
    order: list[int] = []

    def camera(i: int) -> None:
        assert admission.try_enter(10.0)
        order.append(i)
        time.sleep(0.02)
        admission.leave()

    cameras = []
    for i in range(3):
        cameras.append(threading.Thread(target=camera, args=(i,)))
        cameras[-1].start()
        time.sleep(0.05)  # each asks after the one before
    release.set()
    request.join(10)
    for thread in cameras:
        thread.join(15)
    assert order == [0, 1, 2]


def test_an_unknown_share_is_refused_in_one_line():
    with pytest.raises(ValueError, match="stream_share must be one of idle, free-slot"):
        Admission(2, 4, 5.0, stream_share="always")


def test_with_a_single_slot_a_frame_may_take_it_when_no_request_is_there():
    admission = Admission(1, 4, 5.0)
    assert admission.try_enter(0.0)
    assert not admission.try_enter(0.0)  # one frame at a time
    admission.leave()


# ---------------------------------------------------------------- several workers (facefleet.ops.board)
class OtherWorker:
    """Another gunicorn worker, forked after the board was made, with `count` requests in its engine until
    `done` is set (or it is killed)."""

    def __init__(self, board: HttpBoard, count: int) -> None:
        fork = multiprocessing.get_context("fork")
        self.busy, self.done = fork.Event(), fork.Event()
        self.process = fork.Process(target=self._run, args=(board, count))
        self.process.start()
        assert self.busy.wait(10), "the other worker did not start"

    def _run(self, board: HttpBoard, count: int) -> None:
        board.set(count)
        self.busy.set()
        self.done.wait(30)
        board.set(0)

    def end(self) -> None:
        self.done.set()
        self.process.join(10)


def test_a_frame_waits_for_the_other_workers_requests_too():
    board = HttpBoard()
    admission = Admission(2, 4, 5.0, board=board)  # the worker that runs the cameras
    other = OtherWorker(board, 1)
    try:
        assert board.others() == 1
        assert not admission.try_enter(0.1)  # idle: a request is in another worker's engine
        threading.Timer(0.1, other.done.set).start()
        assert admission.try_enter(5.0)  # it left: the frame's wait saw it without being woken
        admission.leave()
    finally:
        other.end()
    assert board.others() == 0


def test_a_worker_that_died_mid_request_leaves_no_count_once_the_master_hears_it():
    board = HttpBoard()
    dead = OtherWorker(board, 3)
    dead.process.kill()  # SIGKILL mid-request: its count stays in its slot
    dead.process.join(10)
    assert board.others() == 3
    board.release(dead.process.pid or 0)  # what gunicorn's child_exit does in the master (cli/gunicorn_conf.py)
    assert board.others() == 0
    assert Admission(2, 4, 5.0, board=board).try_enter(0.0)


def test_free_slot_share_ignores_the_other_workers():
    board = HttpBoard()
    other = OtherWorker(board, 2)
    try:
        admission = Admission(3, 4, 5.0, stream_share="free-slot", board=board)
        assert admission.try_enter(0.0)  # its own slots are free: the other workers' engines are theirs
        admission.leave()
    finally:
        other.end()
