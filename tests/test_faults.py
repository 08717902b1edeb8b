"""Faults the appliance meets in the field, injected into the real parts: a gunicorn worker
killed mid-request, sysfs files that cannot be read or hold garbage under a real exporter
process, and appliances that hang, reset, or answer garbage to the real dashboard and poller."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from facefleet.dashboard import CSP, create_app
from facefleet.dashboard.backends import PollerBackend
from facefleet.settings import DashboardSettings

from .fakeappliance import BROKEN_MODES, FakeAppliance, FakeBrokenAppliance
from .fakejetson import AGX_ORIN, build, nvpmodel_script
from .server import Process, cpu_service, free_port, metric_samples, until

HOSTILE = '<script>alert("x")</script>'
POLL_TIMEOUT_S = 1.0


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (scripts/test.sh does)"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- a. a worker killed mid-request
def worker_pid(master: int) -> int:
    """The one gunicorn worker (FACEFLEET_WORKERS=1): the master's only child."""
    [pid] = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(pid)


def extract(url: str, images: list[str], timeout: float = 120) -> requests.Response:
    return requests.post(f"{url}/extract", json={"images": {"data": images}}, timeout=timeout)


def scrape(url: str) -> str:
    return requests.get(f"{url}/metrics", timeout=30).text


@pytest.fixture(scope="module")
def photos(image_bytes) -> dict[str, str]:
    return {name: base64.b64encode(image_bytes(name)).decode() for name in ("biden.jpg", "solvay_conference_1927.png")}


def test_a_worker_killed_mid_request_fails_it_and_a_new_worker_answers(default_pack, cache_dir, tmp_path, photos):
    """SIGKILL the worker while it runs a slow request (the 29-face photo six times): that
    request fails (with more in flight, each of them fails: the test below), the master starts
    a new worker, the service answers again, counters keep
    counting from where they were, and the dead worker's live gauges leave the scrape
    (gunicorn's child_exit hook marks its pid dead)."""
    svc = cpu_service(default_pack, cache_dir, tmp_path, FACEFLEET_WORKERS="1")
    try:
        for _ in range(3):
            assert extract(svc.url, [photos["biden.jpg"]]).status_code == 200
        before = metric_samples(scrape(svc.url), "facefleet_http_requests_total")
        assert before['{code="200",endpoint="extract"}'] == 3
        old = worker_pid(svc.proc.pid)
        assert f"gauge_livesum_{old}.db" in os.listdir(tmp_path / "metrics")  # what must go when it dies
        killed = kill_mid_request(svc.url, old, [photos["solvay_conference_1927.png"]] * 6)
        assert isinstance(killed, requests.ConnectionError) or killed.status_code >= 500, killed
        new = until("a new worker", lambda: (pid := worker_pid(svc.proc.pid)) != old and pid)
        assert extract(svc.url, [photos["biden.jpg"]]).status_code == 200  # waits in the backlog if need be
        assert_metrics_survive(scrape(svc.url), before, tmp_path / "metrics", old, new)
    finally:
        svc.stop()


def kill_mid_request(url: str, worker: int, images: list[str]) -> requests.Response | Exception:
    """SIGKILL `worker` once the request for `images` is inside the engine; what the client got."""
    outcome = slow_request_in_background(url, images)
    until("the slow request inside the engine", lambda: in_progress(url) == 1)
    os.kill(worker, signal.SIGKILL)
    assert outcome["done"].wait(120)
    return outcome["result"]


def assert_metrics_survive(text: str, before: dict[str, float], folder: Path, old: int, new: int) -> None:
    """Counters go on from the dead worker's, its live gauges are gone, the scrape is valid."""
    after = metric_samples(text, "facefleet_http_requests_total")
    assert after['{code="200",endpoint="extract"}'] == 4  # 3 from the dead worker, 1 from the new one
    assert all(after.get(key, 0) >= value for key, value in before.items())
    assert metric_samples(text, "facefleet_requests_in_progress") == {"": 0.0}  # not stuck at the dead 1
    assert metric_samples(text, "facefleet_model_provider")  # the new worker's gauges are there
    names = os.listdir(folder)
    assert not [n for n in names if n.startswith("gauge_live") and n.endswith(f"_{old}.db")], names
    assert f"counter_{old}.db" in names and f"gauge_livesum_{new}.db" in names
    promtool_check(text)


def slow_request_in_background(url: str, images: list[str]) -> dict:
    """Start one /extract on its own thread; the dict gets `result` (response or exception)
    and `done` is set when it ends."""
    outcome: dict = {"done": threading.Event()}

    def run() -> None:
        try:
            outcome["result"] = extract(url, images)
        except requests.RequestException as exc:
            outcome["result"] = exc
        outcome["done"].set()

    threading.Thread(target=run, daemon=True).start()
    return outcome


def in_progress(url: str) -> float:
    return metric_samples(scrape(url), "facefleet_requests_in_progress")[""]


IN_FLIGHT = 8  # slow requests at once, over 2 workers of 2 engine slots and a queue each


@pytest.mark.slow
def test_killing_a_worker_fails_every_request_in_flight_in_it_and_nothing_else(
    default_pack, cache_dir, tmp_path, photos
):
    """SIGKILL one of two workers while 8 slow requests are in flight: each request that worker held
    (in its engine slots or its queue) fails, the other worker's are answered, and none is retried
    (the service counts each answered POST once). What docs/reliability.md states, measured."""
    svc = cpu_service(default_pack, cache_dir, tmp_path, FACEFLEET_WORKERS="2")
    try:
        clients = [SlowClient(svc.url, [photos["solvay_conference_1927.png"]] * 2) for _ in range(IN_FLIGHT)]
        until("every request in an engine slot or a queue", lambda: admitted(svc.url) == IN_FLIGHT, timeout=120)
        held = held_connections(svc.proc.pid, svc.port, {c.port for c in clients})
        victim = max(held, key=held.__getitem__)
        os.kill(victim, signal.SIGKILL)
        outcomes = [c.outcome() for c in clients]
        failed = [o for o in outcomes if o != 200]
        assert sum(held.values()) == IN_FLIGHT and held[victim] >= 1, held
        assert len(failed) == held[victim], (held, outcomes)  # every one the killed worker held, no other
        assert all(isinstance(o, str) for o in failed), outcomes  # a dropped connection, not an answer
        until("a new worker", lambda: len(worker_pids(svc.proc.pid)) == 2 and victim not in worker_pids(svc.proc.pid))
        samples = metric_samples(scrape(svc.url), "facefleet_http_requests_total")
        # the kernel may have handed all 8 connections to one worker: then none is answered, and no 200 counted
        answered = samples.get('{code="200",endpoint="extract"}', 0.0)
        assert answered == IN_FLIGHT - held[victim], answered  # nothing retried, nothing counted twice
        print(f"worker loss: {held[victim]} of {IN_FLIGHT} in flight failed; held per worker {sorted(held.values())}")
    finally:
        svc.stop()


class SlowClient:
    """One /extract on its own connection and thread; `port` is the connection's local port, known
    before the request is sent, so the server side of it can be found in /proc."""

    def __init__(self, url: str, images: list[str]) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=300)
        self._conn.connect()
        self.port = self._conn.sock.getsockname()[1]
        self._body = json.dumps({"images": {"data": images}})
        self._result: int | str = ""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._conn.request("POST", "/extract", self._body, {"Content-Type": "application/json"})
            self._result = self._conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            self._result = type(exc).__name__
        finally:
            self._conn.close()

    def outcome(self) -> int | str:
        """The status code, or the kind of failure."""
        self._thread.join(300)
        return self._result


def admitted(url: str) -> float:
    """Requests in an engine slot or waiting in the queue, over every worker."""
    text = scrape(url)
    names = ("facefleet_requests_in_progress", "facefleet_queue_depth")
    return sum(metric_samples(text, name)[""] for name in names)


def worker_pids(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def held_connections(master: int, server_port: int, client_ports: set[int]) -> dict[int, int]:
    """{worker pid: how many of the clients' connections it holds}, from the workers' socket inodes
    and the kernel's TCP table (/proc/net/tcp: local and remote address, ..., inode)."""
    ours: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
        if local == server_port and remote in client_ports:
            ours.add(fields[9])
    held = {}
    for pid in worker_pids(master):
        inodes = {os.readlink(fd).removeprefix("socket:[").rstrip("]") for fd in Path(f"/proc/{pid}/fd").iterdir()}
        held[pid] = len(ours & inodes)
    return held


# ---------------------------------------------------------------- b. sysfs that cannot be read
def _directory(path: Path) -> None:
    """Reading it fails with EISDIR, as a broken sysfs attribute's read fails; root too."""
    path.unlink()
    path.mkdir()


def _garbage(path: Path) -> None:
    path.write_bytes(b"\xff\xfe garbage \x00 not a number\n")


def _corrupt_db(path: Path) -> None:
    path.write_bytes(b"this is not a prometheus_client multiprocess file\n" * 4)


THERMAL = Path("sys/class/thermal/thermal_zone1/temp")
FAULTS: dict[str, tuple[str, Path, Callable[[Path], None]]] = {
    "thermal zone is a directory": ("jetson_thermal", THERMAL, _directory),
    "thermal zone holds garbage": ("jetson_thermal", THERMAL, _garbage),
    "GPU load holds garbage": ("jetson_gpu", Path("sys/devices/platform/bus@0/17000000.gpu/load"), _garbage),
    "rail voltage is a directory": (
        "jetson_power",
        Path("sys/bus/i2c/devices/1-0040/hwmon/hwmon1/in1_input"),
        _directory,
    ),
    "memory activity holds garbage": ("jetson_emc", Path("sys/kernel/debug/cactmon/mc_all"), _garbage),
    "device-tree model is a directory": ("jetson_release", Path("proc/device-tree/model"), _directory),
    "a corrupt multiprocess file": ("service_metrics", Path("metrics/counter_999999.db"), _corrupt_db),
}
# One family each collector reports on this FAKE AGX Orin (service_metrics: a counter written
# by the service's own code; service_probe: nothing listens at its URL, which it reports).
FAMILY = {
    "service_metrics": "facefleet_images_total",
    "jetson_release": "facefleet_jetson_info",
    "jetson_gpu": "facefleet_jetson_gpu_load_ratio",
    "jetson_thermal": "facefleet_jetson_temperature_celsius",
    "jetson_power": "facefleet_jetson_rail_power_watts",
    "jetson_emc": "facefleet_jetson_emc_frequency_hertz",
    "jetson_nvpmodel": "facefleet_jetson_power_mode_info",
    "service_probe": "facefleet_probe_up",
}


@pytest.fixture(scope="module")
def exporter(tmp_path_factory) -> tuple[Path, str]:
    """A real `facefleet exporter` process reading <folder>/tree and <folder>/tree/metrics,
    which each test rebuilds: it reads both at every scrape."""
    folder = tmp_path_factory.mktemp("exporter-faults")
    fresh_tree(folder / "tree")
    port = free_port()
    argv = [sys.executable, "-m", "facefleet", "exporter", "--port", str(port), "--root", str(folder / "tree")]
    # a FAKE service that answers the probe: a failed probe fails its collector too (issue 17)
    service = FakeAppliance(json.dumps(GOOD_INFO).encode(), json.dumps(GOOD_HEALTH).encode(), b"")
    argv += ["--metrics-dir", str(folder / "tree" / "metrics"), "--service-url", f"http://{service.target}"]
    env = {"FACEFLEET_NVPMODEL": str(nvpmodel_script(folder, AGX_ORIN.power_mode))}
    process = Process(argv, folder / "exporter.log", env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        until("the exporter", lambda: requests.get(url, timeout=5).ok)
        yield folder / "tree", url
    finally:
        process.stop()
        service.close()


def fresh_tree(root: Path) -> Path:
    """A FAKE AGX Orin tree plus a multiprocess folder holding one counter the service wrote."""
    shutil.rmtree(root, ignore_errors=True)
    build(root, AGX_ORIN)
    code = "from facefleet.ops import metrics; metrics.IMAGES.labels('ok').inc()"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics")}
    (root / "metrics").mkdir()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    return root


def collectors(text: str) -> dict[str, float]:
    samples = metric_samples(text, "facefleet_exporter_collector_success")
    return {key.split('"')[1]: value for key, value in samples.items()}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_sysfs_file_fails_its_collector_and_the_scrape_stays_valid(exporter, fault):
    root, url = exporter
    broken, path, inject = FAULTS[fault]
    inject(fresh_tree(root) / path)
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    found = collectors(response.text)
    assert found == {name: 0.0 if name == broken else 1.0 for name in FAMILY}, found
    for name, family in FAMILY.items():
        assert (f"\n{family}" in response.text) == (name != broken), (name, family)
    promtool_check(response.text)


def test_hostile_text_in_sysfs_stays_inside_its_label(exporter):
    """A board name with quotes, a backslash, a newline and bytes that are not UTF-8 is still
    one label value: the scrape parses, and every collector works."""
    root, url = exporter
    (fresh_tree(root) / "proc/device-tree/model").write_bytes(b'Orin "x"\\ \n} 1\nfake_metric 2 \xff\x00')
    response = requests.get(url, timeout=30)
    assert response.status_code == 200 and set(collectors(response.text).values()) == {1.0}
    assert "\nfake_metric" not in response.text
    promtool_check(response.text)


# ---------------------------------------------------------------- c. appliances that misbehave
GOOD_INFO = {
    "version": "0.1.0",
    "onnxruntime": {"version": "1.20.1", "available_providers": ["CPUExecutionProvider"]},
    "models": {
        "detection": {"name": "yunet_2023mar_int8bq", "active_provider": "cpu", "attempts": [{"provider": "cpu"}]},
        "recognition": {"name": "sface_2021dec_int8bq", "active_provider": "cpu", "attempts": [{"provider": "cpu"}]},
    },
    "defaults": {"det_threshold": 0.5},
}
GOOD_HEALTH = {"status": "ok", "checks": {}}
GOOD_METRICS = (
    b'# TYPE facefleet_http_requests_total counter\nfacefleet_http_requests_total{code="200",endpoint="extract"} 5\n'
)
# Right JSON, wrong types everywhere a page or the poller looks.
WRONG_TYPES_INFO = {
    "version": ["0.1"],
    "onnxruntime": {"version": 1, "available_providers": 7},
    "models": ["yunet", {"name": "sface"}],
    "defaults": "none",
}
WRONG_INNER_TYPES_INFO = {
    "onnxruntime": ["1.20"],
    "models": {"detection": {"name": 3, "attempts": 5, "sha256": 12}, "recognition": "sface"},
    "defaults": {"a": [1, 2]},
}
HOSTILE_INFO = {
    "version": HOSTILE,
    "onnxruntime": {"version": HOSTILE, "available_providers": [HOSTILE]},
    "models": {
        HOSTILE: {
            "name": HOSTILE,
            "active_provider": HOSTILE,
            "sha256": HOSTILE,
            "attempts": [{"provider": HOSTILE, "ok": False, "reason": HOSTILE}, {"provider": HOSTILE, "ok": True}],
        }
    },
    "defaults": {HOSTILE: HOSTILE},
}
LABEL = HOSTILE.replace('"', "")
HOSTILE_METRICS = (
    "# TYPE facefleet_jetson_info gauge\n"
    f'facefleet_jetson_info{{board="{LABEL}",jetpack="{LABEL}",l4t="x"}} 1\n'
    "# TYPE facefleet_model_provider gauge\nfacefleet_model_provider 1\n"  # labels it must have are missing
).encode()
HUGE = b'{"status": "ok", "pad": "' + b"x" * (12 * 2**20) + b'"}'


def misbehaving_http() -> dict[str, FakeAppliance]:
    """FAKE appliances speaking HTTP but answering garbage."""
    dumps = lambda value: json.dumps(value).encode()  # noqa: E731
    return {
        "not-json": FakeAppliance(b"<html>oops</html>", b"\x00\xff not json", b"}{ not metrics"),
        "wrong-types": FakeAppliance(dumps(WRONG_TYPES_INFO), dumps({"status": ["ok"]}), b"{}"),
        "wrong-inner-types": FakeAppliance(dumps(WRONG_INNER_TYPES_INFO), dumps([GOOD_HEALTH]), GOOD_METRICS),
        "huge": FakeAppliance(HUGE, HUGE, HUGE),
        "hostile": FakeAppliance(dumps(HOSTILE_INFO), dumps({"status": "failing", "reason": HOSTILE}), HOSTILE_METRICS),
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The real dashboard app and poller (not started: the tests run its cycles) over one good
    FAKE appliance and one per way of misbehaving."""
    folder = tmp_path_factory.mktemp("dashboard-faults")
    fakes: dict[str, FakeAppliance | FakeBrokenAppliance] = {
        "good": FakeAppliance(json.dumps(GOOD_INFO).encode(), json.dumps(GOOD_HEALTH).encode(), GOOD_METRICS),
        **misbehaving_http(),
        **{mode: FakeBrokenAppliance(mode) for mode in BROKEN_MODES},
    }
    try:
        sd = [{"targets": [f.target], "labels": {"appliance": n, "exporter": f.target}} for n, f in fakes.items()]
        (folder / "targets.json").write_text(json.dumps(sd))
        settings = DashboardSettings(
            targets_file=str(folder / "targets.json"),
            timeout_s=POLL_TIMEOUT_S,
            poll_interval_s=60,
            database=str(folder / "dash.sqlite3"),
        )
        backend = PollerBackend(settings)
        yield create_app(settings, backend, start_poller=False), backend.poller, list(fakes)
    finally:
        for fake in fakes.values():
            fake.close()


def bounded_cycle(poller, bound_s: float) -> None:
    """One poll cycle on a thread; fails if it does not end within `bound_s` (a hung appliance
    must cost its timeout, not the whole fleet's view)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            poller.cycle()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound_s)
    assert not thread.is_alive(), f"a poll cycle still runs after {bound_s} s: a misbehaving appliance hangs it"
    if errors:
        raise errors[0]


def test_misbehaving_appliances_fail_alone_and_pages_render(fleet):
    """Two cycles (the second computes figures between scrapes): the good appliance is ok,
    every misbehaving one is not, and each page renders with every appliance string escaped."""
    app, poller, names = fleet
    # each appliance costs at most three requests of POLL_TIMEOUT_S, all polled concurrently
    for _ in range(2):
        bounded_cycle(poller, bound_s=3 * POLL_TIMEOUT_S + 10)
    client = app.test_client()
    rows = {a["name"]: a for a in client.get("/api/fleet").get_json()["appliances"]}
    assert set(rows) == set(names)
    assert rows["good"]["status"] == "ok", rows["good"]
    assert {n: rows[n]["status"] for n in names if n != "good" and rows[n]["status"] == "ok"} == {}
    assert rows["hang"]["status"] == "stale" and rows["trickle"]["status"] == "stale"
    assert rows["reset"]["status"] == "down" and rows["not_http"]["status"] == "down"
    overview = client.get("/").text
    assert all(f'<tr class="appliance {rows[n]["status"]}" data-name="{n}">' in overview for n in names)
    for path in ["/", "/fragment/rows", *(f"/appliances/{n}" for n in names)]:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[-2000:])
        assert "<script>alert" not in page.text, path  # every appliance string is escaped
        assert page.headers["Content-Security-Policy"] == CSP and "'unsafe-inline'" not in CSP
    hostile = client.get("/appliances/hostile").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in hostile  # shown, as text
