"""mypy on the package as it is installed, whatever the folders are called.

pyproject maps import names onto folders ([tool.setuptools] package-dir: `facefleet` is service/,
`facefleet.dashboard` is dashboard/), and the editable install resolves them with an import hook
that mypy cannot follow. So this builds the installed layout as a tree of links under
.cache/typecheck, runs mypy on it with pyproject's [tool.mypy] options, and prints each error with
the path of the real file. Extra arguments go to mypy. Exit status: mypy's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".cache" / "typecheck"


def packages() -> dict[str, Path]:
    """Import name -> folder of every package pyproject declares (the longest package-dir prefix wins)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools.get("package-dir", {})
    found = {}
    for name in setuptools["packages"]:
        key = max((k for k in mapping if k in ("", name) or name.startswith(k + ".")), key=len, default=None)
        if key is None:
            found[name] = ROOT / name.replace(".", "/")
        else:
            found[name] = ROOT / mapping[key] / name[len(key) :].lstrip(".").replace(".", "/")
    return found


def build_tree() -> dict[str, str]:
    """Links to every module under its installed path; returns link -> real file, to print real paths.

    Each package's folder is walked whole, the most specific package last, so a sub-folder pyproject
    forgot to declare is still checked (test_packaging's wheel test is what catches the omission)."""
    shutil.rmtree(TREE, ignore_errors=True)
    modules: dict[Path, Path] = {}
    for name, folder in sorted(packages().items(), key=lambda item: len(item[0])):
        for source in folder.rglob("*.py"):
            if "__pycache__" not in source.parts:
                modules[source] = TREE.joinpath(*name.split("."), source.relative_to(folder))
    real = {}
    for source, link in modules.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
        real[str(link.relative_to(ROOT))] = str(source.relative_to(ROOT))
    return real


def targets() -> list[str]:
    """The tree's top-level packages, and [tool.mypy] files that are not a package's folder (bench/)."""
    declared = packages()
    folders = {folder.resolve() for folder in declared.values()}
    tops = sorted({str(TREE.joinpath(name.split(".")[0]).relative_to(ROOT)) for name in declared})
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"].get("files", [])
    return tops + [f for f in files if (ROOT / f).resolve() not in folders]


def main(argv: list[str]) -> int:
    real = build_tree()
    # its own cache: mypy's cache remembers each module's path, and these paths are the links'
    cache = ["--cache-dir", str(TREE.parent / "typecheck-mypy")]
    command = [sys.executable, "-m", "mypy", *cache, *targets(), *argv]
    env = {**os.environ, "MYPYPATH": str(TREE)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    for line in (done.stdout + done.stderr).splitlines():
        path, sep, rest = line.partition(":")
        print(real.get(path, path) + sep + rest)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
