"""docs/img/dashboard.png: the fleet dashboard, as Debian's chromium (driven by Playwright) shows
it, over a CPU-only fleet started the way the tests start theirs (tests/server.py):

- lab-cpu-01: a real `facefleet serve` on the CPU (keys on) and its real exporter on a FAKE plain
  x86 host tree, with steady keyed traffic: healthy, providers green, "no GPU";
- lab-cpu-02: a second real service and exporter, flooded by a client with a wrong key: healthy,
  its 401s shown as client errors apart from server errors;
- locked-01: a FAKE appliance (tests/fakeappliance.py) whose keys are of another fleet:
  "unauthorized".

Before it writes the PNG it checks the page shows what the picture claims, and exits 1 with one
line if not. Needs the default pack (`.cache/default-pack`, pulled by the tests) and
/usr/bin/chromium.

Usage: .venv/bin/python scripts/screenshot_dashboard.py [--output docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.fakeappliance import FakeAppliance  # noqa: E402
from tests.fakejetson import plain_host  # noqa: E402
from tests.server import Process, Service, cpu_service, exporter_process, free_port, until  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PHOTO = Path("/work/shared/images/biden.jpg")
KEY = "key-of-the-lab-appliances-0001"


def appliance(folder: Path, models: Path, name: str, started: list) -> tuple[Service, str]:
    """A real CPU service (keys on) and its real exporter; returns the service and the exporter's host:port."""
    folder.mkdir()
    keys = folder / "api-keys"
    keys.write_text(f"# the inference_service role's file\n{KEY}\n")
    svc = cpu_service(models, folder / "cache", folder, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys))
    started.append(svc)
    exporter, url = exporter_process(folder, svc, plain_host(folder / "plain"), FACEFLEET_API_KEY_FILE=str(keys))
    started.append(exporter)
    print(f"{name}: service {svc.url}, exporter {url}", file=sys.stderr)
    return svc, url.removeprefix("http://")


def traffic(url: str, key: str, pause_s: float, stop: threading.Event) -> None:
    body = {"images": {"data": [base64.b64encode(PHOTO.read_bytes()).decode()]}}
    while not stop.wait(pause_s):
        with contextlib.suppress(requests.RequestException):  # a busy service: the next one
            requests.post(f"{url}/extract", json=body, headers={"X-API-Key": key}, timeout=30)


def check(page) -> list[str]:
    """What the picture claims, read back from the page; the problems found."""
    row = {
        name: page.locator(f'tr.appliance[data-name="{name}"]') for name in ("lab-cpu-01", "lab-cpu-02", "locked-01")
    }
    found = {name: r.locator(".badge").inner_text() for name, r in row.items()}
    problems = [f"{n} is {s}" for n, s in found.items() if s != ("unauthorized" if n == "locked-01" else "ok")]
    for name in ("lab-cpu-01", "lab-cpu-02"):
        if row[name].locator("td.gpu").inner_text() != "no GPU":
            problems.append(f"{name} does not say no GPU")
        if row[name].locator(".provider.fallback").count() or not row[name].locator(".provider.expected").count():
            problems.append(f"{name}'s providers are not in the healthy colour")
    if "401/403" not in row["lab-cpu-02"].locator("td.client-errors").inner_text():
        problems.append("lab-cpu-02 shows no refused requests")
    return problems


def shoot(url: str, output: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 330})
            page.goto(url + "/", wait_until="load")
            problems = check(page)
            if problems:
                raise SystemExit(f"screenshot_dashboard: the page does not show what it should: {'; '.join(problems)}")
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    parser.add_argument("--models-dir", type=Path, default=ROOT / ".cache" / "default-pack")
    args = parser.parse_args()
    for needed in (CHROMIUM, PHOTO, args.models_dir):
        if not Path(needed).exists():
            print(f"screenshot_dashboard: {needed} is missing", file=sys.stderr)
            return 1
    folder = Path(tempfile.mkdtemp(prefix="facefleet-screenshot-"))
    started: list = []
    stop = threading.Event()
    locked = None
    try:
        lab1, exporter1 = appliance(folder / "lab-cpu-01", args.models_dir, "lab-cpu-01", started)
        lab2, exporter2 = appliance(folder / "lab-cpu-02", args.models_dir, "lab-cpu-02", started)
        threading.Thread(target=traffic, args=(lab1.url, KEY, 0.5, stop), daemon=True).start()
        threading.Thread(target=traffic, args=(lab2.url, KEY, 2.0, stop), daemon=True).start()
        threading.Thread(target=traffic, args=(lab2.url, "an-old-key-of-a-client-01", 0.1, stop), daemon=True).start()
        info = requests.get(f"{lab1.url}/info", headers={"X-API-Key": KEY}, timeout=10).content
        health = requests.get(f"{lab1.url}/health", timeout=30).content
        locked = FakeAppliance(info, health, b"", api_key="a-key-of-another-fleet-00001")
        fleet = [
            {
                "targets": [lab1.url.removeprefix("http://")],
                "labels": {"appliance": "lab-cpu-01", "exporter": exporter1},
            },
            {
                "targets": [lab2.url.removeprefix("http://")],
                "labels": {"appliance": "lab-cpu-02", "exporter": exporter2},
            },
            {"targets": [locked.target], "labels": {"appliance": "locked-01", "exporter": locked.target}},
        ]
        for entry in fleet:
            entry["labels"]["group"] = "lab"
        (folder / "targets.json").write_text(json.dumps(fleet))
        port = free_port()
        env = {
            "FACEFLEET_DASHBOARD_TARGETS_FILE": str(folder / "targets.json"),
            "FACEFLEET_DASHBOARD_POLL_INTERVAL_S": "2",
            "FACEFLEET_DASHBOARD_DATABASE": str(folder / "dashboard.sqlite3"),
            "FACEFLEET_DASHBOARD_PORT": str(port),
            "FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(folder / "lab-cpu-01" / "api-keys"),
        }
        started.append(Process([sys.executable, "-m", "facefleet", "dashboard"], folder / "dashboard.log", env))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            rows = {a["name"]: a for a in requests.get(f"{url}/api/fleet", timeout=5).json()["appliances"]}
            labs = [rows[n] for n in ("lab-cpu-01", "lab-cpu-02")]
            return all(len(r["spark"]) >= 6 and r["client_error_ratio"] is not None for r in labs)

        until("six polls of the fleet", ready, timeout=120)
        shoot(url, args.output)
        print(f"wrote {args.output} ({args.output.stat().st_size // 1024} kB)", file=sys.stderr)
    finally:
        stop.set()
        if locked:
            locked.close()
        for process in reversed(started):
            process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
