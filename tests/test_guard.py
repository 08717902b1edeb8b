"""The guard that keeps the suite off an installed appliance (tests/appliance.py, checked by conftest.py at
the session's end) sees a change to a small file, to a large one and a file added or removed."""

from __future__ import annotations

import os
from pathlib import Path

from . import appliance


def test_the_installed_appliance_guard_sees_every_kind_of_change(tmp_path: Path) -> None:
    small, large = tmp_path / "api-keys", tmp_path / "model.onnx"
    small.write_text("key-one\n")
    large.write_bytes(b"\0" * (appliance.HASHED_UP_TO + 1))
    os.utime(large, ns=(10**18, 10**18))  # so the write below moves it whatever the clock's granularity
    before = appliance._tree(tmp_path)

    small.write_text("key-two\n")  # same size, new content
    with large.open("r+b") as handle:  # same size, one byte changed
        handle.write(b"\1")
    (tmp_path / "new.txt").write_text("x")
    after = appliance._tree(tmp_path)
    changed = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    assert changed == {str(small), str(large), str(tmp_path / "new.txt")}

    os.utime(large, ns=(0, 0))
    assert appliance._tree(tmp_path)[str(large)] != after[str(large)]  # a rewrite that kept the size
