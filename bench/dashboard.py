"""The dashboard with 200 FAKE appliances (loopback servers answering with bodies captured from
a real service and a real exporter on a FAKE AGX Orin tree): poll cycle time and the overview
page's server-side render time.

Usage: .venv/bin/python bench/dashboard.py [--appliances 200] [--cycles 5] [--renders 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import generate_latest  # noqa: E402

from bench.inputs import one_line, require_models  # noqa: E402
from facefleet.api import create_app as create_service  # noqa: E402
from facefleet.dashboard import create_app  # noqa: E402
from facefleet.dashboard.backends import PollerBackend  # noqa: E402
from facefleet.ops.exporter import build_registry  # noqa: E402
from facefleet.settings import DashboardSettings, Settings  # noqa: E402
from tests.fakeappliance import FakeAppliance  # noqa: E402
from tests.fakejetson import AGX_ORIN, build, nvpmodel_script  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appliances", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "default-pack"))
    args = parser.parse_args()
    require_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="facefleet-bench-dashboard-"))
    service = create_service(
        Settings.of(models_dir=args.models_dir, providers=("cpu",), log_level="WARNING", auth="off")
    )
    client = service.test_client()
    info, health = client.get("/info").data, client.get("/health").data
    metrics = generate_latest(
        build_registry(
            work / "none", build(work / "orin", AGX_ORIN), "", str(nvpmodel_script(work, AGX_ORIN.power_mode))
        )
    )
    fakes = [FakeAppliance(info, health, metrics) for _ in range(args.appliances)]
    try:
        sd = [
            {
                "targets": [f.target],
                "labels": {"appliance": f"orin-{i:03d}", "group": f"line-{i % 7}", "exporter": f.target},
            }
            for i, f in enumerate(fakes)
        ]
        (work / "targets.json").write_text(json.dumps(sd))
        settings = DashboardSettings(targets_file=str(work / "targets.json"), database=str(work / "d.sqlite3"))
        backend = PollerBackend(settings)
        app = create_app(settings, backend, start_poller=False)
        cycles = [backend.poller.cycle() for _ in range(args.cycles)]
        page = app.test_client()
        renders = []
        for _ in range(args.renders):
            start = time.perf_counter()
            response = page.get("/")
            renders.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        api = []
        for _ in range(args.renders):
            start = time.perf_counter()
            page.get("/api/fleet")
            api.append((time.perf_counter() - start) * 1000)
        print(
            json.dumps(
                {
                    "appliances": args.appliances,
                    "poll_pool": settings.pool,
                    "poll_interval_s": settings.poll_interval_s,
                    "poll_cycle_s": [round(c, 2) for c in cycles],
                    "poll_cycle_p50_s": round(statistics.median(cycles), 2),
                    "overview_render_p50_ms": round(statistics.median(renders), 1),
                    "overview_render_max_ms": round(max(renders), 1),
                    "api_fleet_p50_ms": round(statistics.median(api), 1),
                    "statuses": backend.fleet()["counts"],
                },
                indent=2,
            )
        )
    finally:
        for fake in fakes:
            fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(one_line("dashboard", main))
