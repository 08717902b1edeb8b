"""`facefleet`: the operator's command line (models, providers, detect, compare)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facefleet import __version__
from facefleet.cli.appliance import ApplianceEnv, merged_environ, read_appliance_env, source_of
from facefleet.cli.humanize import fixed, human_size
from facefleet.errors import FacefleetError, ImageError
from facefleet.models.manifest import ModelSpec, load_manifest
from facefleet.settings import Settings, parse_providers, parse_size

if TYPE_CHECKING:  # numpy, cv2, onnx and onnxruntime load where a command needs them: --help stays fast
    from facefleet.engine.pipeline import ImageResult

log = logging.getLogger("facefleet")
# The daemons get their settings from their own units' environment files, never from the CLI's lookup.
DAEMONS = ("serve", "exporter")


def _appliance(args: argparse.Namespace) -> ApplianceEnv:
    """The installed appliance's settings (service.env), read once per command; none for the daemons."""
    if getattr(args, "command", None) in DAEMONS:
        return ApplianceEnv(None, {})
    if not hasattr(args, "_appliance"):
        args._appliance = read_appliance_env()
        if args._appliance.note:
            print(f"facefleet: note: {args._appliance.note}", file=sys.stderr)
    return args._appliance


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """Environment settings with the command line's flags on top, and under both the installed
    appliance's settings file when there is one (so the CLI sees the service's models folder)."""
    return Settings.from_env(
        merged_environ(_appliance(args)),
        **extra,
        models_dir=args.models_dir,
        cache_dir=args.cache_dir,
        providers=args.providers,
        det_name=args.det,
        rec_name=args.rec,
        shape_policy=args.shape_policy,
        det_threshold=getattr(args, "threshold", None),
    )


def _selected(names: list[str], default: list[str]) -> list[ModelSpec]:
    manifest = load_manifest()
    return [manifest.get(n) for n in (names or default)]


# ---------------------------------------------------------------- models
def cmd_models_list(args: argparse.Namespace) -> int:
    settings, manifest = _settings(args), load_manifest()
    defaults = {manifest.default_detection, manifest.default_recognition}
    print(f"{'name':24} {'task':11} {'family':7} {'file':44} {'here':5} licence")
    for spec in manifest.models.values():
        here = "yes" if (Path(settings.models.models_dir) / spec.file).is_file() else "no"
        mark = "*" if spec.name in defaults else " "
        print(f"{spec.name + mark:24} {spec.task:11} {spec.family:7} {spec.file:44} {here:5} {spec.licence}")
    print(f"\n* default pack; models folder: {_models_dir_said(args, settings)}; manifest: {manifest.path}")
    return 0


def _models_dir_said(args: argparse.Namespace, settings: Settings) -> str:
    """'/var/lib/facefleet/models (from /etc/facefleet/service.env)': the folder looked in and why that one."""
    where = source_of("models_dir", args.models_dir, "--models-dir", _appliance(args))
    return f"{settings.models.models_dir} ({'the default' if where == 'default' else 'from ' + where})"


def cmd_models_verify(args: argparse.Namespace) -> int:
    from facefleet.app.models import VerifyModels, verify_models

    report = verify_models(_settings(args), VerifyModels(tuple(args.names)))
    for problem in report.problems:
        print(problem)
    print(f"{len(report.checked)} models checked, {len(report.problems)} problems")
    return 0 if report.ok else 1


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from facefleet.engine.loader import trt_fixed_hw
    from facefleet.models.modelfiles import require_model_file
    from facefleet.models.prepare import prepare_model

    settings, manifest = _settings(args), load_manifest()
    for spec in _selected(args.names, [manifest.default_detection, manifest.default_recognition]):
        path, digest = require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
        fixed = None
        if args.size and spec.task == "detection" and not spec.fixed_hw:
            fixed = (args.size[1], args.size[0])
        fixed = fixed or trt_fixed_hw(spec, settings)
        out = prepare_model(spec, path, digest, settings.models.cache_dir, fixed)
        print(f"{spec.name}: {'unchanged, runs as is' if out == path else out}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from facefleet.app.models import Pulled, PullModels, pull_models

    def said(done: Pulled) -> None:
        if done.error is not None:
            print(f"facefleet: {done.error}", file=sys.stderr)
        else:
            print(f"{done.name}: {'fetched' if done.fetched else 'already present'} {done.path}")

    report = pull_models(_settings(args), PullModels(tuple(args.names)), said)
    return 1 if report.failed else 0


def cmd_models_synth(args: argparse.Namespace) -> int:
    from facefleet.models.synth import ALIASES, synthesize

    settings, manifest = _settings(args), load_manifest()
    name = ALIASES.get(args.name, args.name)
    spec = manifest.get(name)
    if args.out:
        target = Path(args.out)
    elif spec.sha256 or spec.sources:  # a random file in the models folder would pass for the pullable real one
        print(
            f"facefleet: {name} has published weights; give --out so random ones never take their place",
            file=sys.stderr,
        )
        return 2
    else:
        target = Path(settings.models.models_dir) / spec.file
    if target.exists() and not args.force:
        print(f"facefleet: {target} exists; --force replaces it with random weights", file=sys.stderr)
        return 2
    path, parameters = synthesize(name, target, args.seed)
    print(f"{name}: {parameters / 1e6:.2f} M parameters, random weights (for speed only) -> {path}")
    return 0


def cmd_models_quantize(args: argparse.Namespace) -> int:
    from facefleet.app.quantize import GateFailedError, calibration_images, quantize

    settings, manifest = _settings(args), load_manifest()
    spec = manifest.get(args.name)
    if not args.images:
        print(
            "facefleet: an INT8 copy is calibrated and judged on photos with faces: give --images DIR "
            "(DIR/<subject>/<photo> labels people for the recognizer's gate)",
            file=sys.stderr,
        )
        return 2
    gate_photos = calibration_images(Path(args.images), 10**6)
    try:
        path, report = quantize(spec, settings, args.mode, gate_photos[: args.limit], gate_photos)
    except GateFailedError as failed:
        _print_gate(failed.report)
        raise
    _print_gate(report)
    print(f"{spec.name}: {args.mode} INT8 -> {path}, accuracy gate passed; use it as {spec.name}@int8")
    return 0


def _print_gate(report: Any) -> None:
    """The photos or pairs that failed (all of them are in the report file), then the summary figures."""
    failed = [check for check in report.checks if not check.passed]
    for check in failed:
        print(f"  FAIL {check.name}: {check.detail}")
    held = f"{len(report.checks) - len(failed)} of {len(report.checks)} checks held"
    figures = ", ".join(f"{key} {value}" for key, value in report.figures.items())
    print(f"accuracy gate of {report.model}@int8: {'passed' if report.passed else 'failed'}: {held}; {figures}")


# ---------------------------------------------------------------- providers
def cmd_providers(args: argparse.Namespace) -> int:
    from facefleet.engine.loader import load_model
    from facefleet.ops.diagnose import environment_report

    settings, manifest = _settings(args), load_manifest()
    if not args.verbose:  # each fallback's reason is in the report: the same lines on stderr add nothing
        logging.getLogger("facefleet.engine.runtime").setLevel(logging.ERROR)
    report: dict[str, Any] = {
        "environment": environment_report(settings.engine.device_id, settings.engine.openvino_device),
        "chain": list(settings.engine.providers),
        "choice": settings.engine.choice,
        "models_dir": _models_dir_said(args, settings),
        "models": {},
    }
    for name in (
        settings.models.det_name or manifest.default_detection,
        settings.models.rec_name or manifest.default_recognition,
    ):
        try:
            opened, _ = load_model(manifest.get(name), settings)
            report["models"][name] = opened.report()
        except FacefleetError as exc:
            report["models"][name] = {"error": str(exc)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_providers(report)
    failed = [name for name, info in report["models"].items() if "error" in info]
    if failed:  # a model that does not load is a model problem (exit 2), whatever else the report shows
        print(f"facefleet: {', '.join(failed)} failed to load (see above)", file=sys.stderr)
        return 2
    return 0


def print_providers(report: dict[str, Any]) -> None:
    """The provider report as text: the build, each GPU provider's verdict, each model's chain."""
    env, gpu = report["environment"], report["environment"]["gpu"]
    print(f"onnxruntime {env['onnxruntime']} ({env['device']}); offers: {', '.join(env['available_providers'])}")
    print(f"build: {gpu['built_for']}")
    jetson = env["jetson"]
    print(f"Jetson: {'L4T ' + jetson.get('l4t', '?') + ' ' + jetson.get('board', '') if jetson else 'no'}")
    print(f"NVIDIA driver: {'libcuda.so.1 loads' if gpu['driver'] else 'libcuda.so.1 not found'}")
    for short, probe in gpu["providers"].items():
        if probe["library"] is not None:
            present = (
                "library and device plugin present" if short == "openvino" else "libraries, driver and device present"
            )
            print(f"  {short:9} {probe['problem'] or present}")
    print(f"chain: {' -> '.join(report['chain'])}" + (f" ({report['choice']})" if report.get("choice") else ""))
    if "models_dir" in report:
        print(f"models folder: {report['models_dir']}")
    for name, info in report["models"].items():
        if "error" in info:
            print(f"{name}: FAILED: {info['error']}")
            continue
        print(f"{name}: runs on {info['active_provider']} (warm-up {info['warmup_ms']} ms){_placement(info)}")
        for attempt in info["attempts"]:
            print(f"  {attempt['provider']:9} {_attempt_said(attempt)}")
        choice = info.get("choice")
        if choice and choice["candidates"]:
            print(f"  chosen: {choice['chosen']}, {choice['why']}")


def _attempt_said(attempt: dict[str, Any]) -> str:
    """'ok', 'ok (works, not chosen: 61.2 ms median)' or 'no: <reason>'."""
    if not attempt["ok"]:
        return "no: " + attempt["reason"]
    return f"ok ({attempt['reason']})" if attempt["reason"] else "ok"


def _placement(info: dict[str, Any]) -> str:
    """', nodes: 87 on CPUExecutionProvider' or ', PARTIAL FALLBACK: 3 of 40 nodes on the CPU (Reshape, Shape)'."""
    placement = info.get("node_placement")
    if not placement:
        return ""
    total, cpu = sum(placement["nodes"].values()), placement["cpu_nodes"]
    if info.get("partial_fallback"):
        return f", PARTIAL FALLBACK: {cpu} of {total} nodes on the CPU ({', '.join(placement['cpu_ops'])})"
    where = ", ".join(f"{count} on {provider}" for provider, count in placement["nodes"].items())
    return f", nodes: {where}"


# ---------------------------------------------------------------- detect / compare
def _print_result(path: str, result: ImageResult) -> None:
    """One image's faces on stdout; a failed image is one line on stderr (the others still answered)."""
    if not result.ok:
        print(f"facefleet: {path}: {result.error}", file=sys.stderr)
        return
    h, w = result.shape or (0, 0)
    print(f"{path}: {len(result.faces)} face(s) in {w}x{h}")
    for k, face in enumerate(result.faces, 1):
        x1, y1, x2, y2 = (fixed(v, 1) for v in face.bbox)
        line = f"  face {k}: box ({x1}, {y1}, {x2}, {y2}) score {fixed(face.score, 3)}"
        if face.embedding is not None:
            head = ", ".join(fixed(v, 3, sign=True) for v in face.embedding[:4])
            line += f"; embedding {face.embedding.size}-d, norm {fixed(face.norm or 0.0, 2)}, [{head}, ...]"
        print(line)


def _draw_target(paths: list[str], out: str) -> tuple[Path, bool]:
    """OUT and whether it is a folder: it is, unless one image is drawn into a name with an image suffix."""
    target = Path(out)
    as_dir = (
        len(paths) > 1 or target.is_dir() or target.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp", ".bmp")
    )
    if as_dir:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FacefleetError(f"cannot create the --draw folder {target}: {exc.strerror}") from None
    return target, as_dir


def _draw(paths: list[str], results: list[ImageResult], images: list[bytes | ImageError], out: str) -> int:
    """Write each answered image with its faces drawn; the number of images that could not be written."""
    import cv2

    from facefleet.app.draw import annotate
    from facefleet.engine.decode import decode_image

    target, as_dir = _draw_target(paths, out)
    failed = 0
    for path, result, data in zip(paths, results, images, strict=True):
        if not result.ok or isinstance(data, ImageError):
            continue
        file = target / f"{Path(path).stem}.faces.jpg" if as_dir else target
        if not cv2.imwrite(str(file), annotate(decode_image(data), result.faces)):
            print(f"facefleet: {path}: cannot write {file}", file=sys.stderr)
            failed += 1
            continue
        print(f"drew {len(result.faces)} face(s) into {file}", file=sys.stderr)
    return failed


def _read(paths: list[str]) -> list[bytes]:
    data = []
    for path in paths:
        try:
            data.append(Path(path).read_bytes())
        except OSError as exc:
            raise FacefleetError(f"cannot read {path}: {exc.strerror}") from None
    return data


def _read_each(paths: list[str]) -> list[bytes | ImageError]:
    """Each file's bytes, or the reason it cannot be read: that image alone fails, as in /extract."""
    data: list[bytes | ImageError] = []
    for path in paths:
        try:
            data.append(Path(path).read_bytes())
        except OSError as exc:
            data.append(ImageError(f"cannot read it ({exc.strerror or exc})"))
    return data


def _detect_json(paths: list[str], results: list[ImageResult]) -> str:
    """`facefleet detect --json`: answers like /extract with landmarks asked for."""
    from facefleet.contract.faces import FaceOptions, face_json

    payload = [
        {
            "image": path,
            "status": "ok" if r.ok else "failed",
            **(
                {"faces": [face_json(f, FaceOptions(landmarks=True)) for f in r.faces]}
                if r.ok
                else {"error": {"code": r.error.code if r.error else "failed", "message": str(r.error)}}
            ),
        }
        for path, r in zip(paths, results, strict=True)
    ]
    return json.dumps(payload)


def _engine_line(engine: Any) -> str:
    """'detector yunet_2023mar_int8bq on cpu, recognizer sface_2021dec_int8bq on cpu'."""
    line = f"detector {engine.detector.spec.name} on {engine.detector.opened.provider}"
    if engine.recognizer:
        line += f", recognizer {engine.recognizer.spec.name} on {engine.recognizer.opened.provider}"
    return line


def cmd_detect(args: argparse.Namespace) -> int:
    """Every image answered that can be: a bad or unreadable one is one line on stderr and exit 1."""
    from facefleet.app.extract import ExtractRequest, extract
    from facefleet.engine.decode import budget_groups
    from facefleet.engine.pipeline import FaceEngine, ImageResult

    settings = _settings(args)
    images = _read_each(args.images)
    engine = None
    if all(isinstance(item, ImageError) for item in images):  # nothing to run the models on
        results = [ImageResult(error=item) for item in images if isinstance(item, ImageError)]
    else:
        engine = FaceEngine.from_settings(settings, with_recognizer=not args.no_embed)
        request, limits = ExtractRequest(embed=not args.no_embed), settings.engine
        results = [  # in groups within FACEFLEET_MAX_REQUEST_PIXELS, the engine's budget per call
            result
            for group in budget_groups(images, limits.max_request_pixels, limits.max_pixels)
            for result in extract(engine, [images[i] for i in group], request).images
        ]
    if args.json:
        print(_detect_json(args.images, results))
        for path, result in zip(args.images, results, strict=True):
            if not result.ok:
                print(f"facefleet: {path}: {result.error}", file=sys.stderr)
    else:
        if engine is not None:
            print(_engine_line(engine))
        for path, result in zip(args.images, results, strict=True):
            _print_result(path, result)
    unwritten = _draw(args.images, results, images, args.draw) if args.draw else 0
    return 0 if all(r.ok for r in results) and not unwritten else 1


def _face_number(text: str) -> int:
    """argparse type for --face-a/--face-b: faces are numbered from 1, as `facefleet detect` prints them."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a face number (1, 2, ...)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("faces are numbered from 1, as `facefleet detect` prints them")
    return value


def _box(face: Any) -> list[float]:
    return [round(float(v), 1) + 0.0 for v in face.bbox]  # + 0.0: never -0.0


def _compared(args: argparse.Namespace, engine: Any) -> Any:
    """The comparison of A and B (facefleet.app.compare); an unusable image or a face number out of
    range is one line, and a warning names the face taken from several."""
    from facefleet.app.compare import CompareRequest, NoSuchFaceError, SideError, compare_images

    paths, flags = (args.a, args.b), ("--face-a", "--face-b")
    face_a, face_b = (None if n is None else n - 1 for n in (args.face_a, args.face_b))
    try:
        comparison = compare_images(engine, _read(list(paths)), CompareRequest((face_a, face_b), args.all_pairs))
    except NoSuchFaceError as exc:
        path, flag = paths[exc.image], flags[exc.image]
        raise FacefleetError(f"{path} has {exc.found} face(s): {flag} must be from 1 to {exc.found}") from None
    except SideError as exc:
        raise FacefleetError(f"{paths[exc.image]}: {exc.reason}") from None
    assert comparison.sides is not None  # two images were compared
    for path, side, flag in zip(paths, comparison.sides, flags, strict=True):
        if side.ambiguous:
            print(
                f"facefleet: warning: {path} has {len(side.faces)} faces; compared face {side.used[0] + 1}, "
                f"the largest (choose with {flag} N, or --all-pairs)",
                file=sys.stderr,
            )
    return comparison


def _side_json(path: str, side: Any) -> dict[str, Any]:
    compared = [{"face": k + 1, "bbox": _box(side.faces[k])} for k in side.used]
    return {"image": path, "faces_found": len(side.faces), "chosen": side.chosen, "compared": compared}


def _print_side(path: str, side: Any) -> None:
    why = {"largest": ", the largest", "requested": ", as asked", "all": ""}[side.chosen] if len(side.faces) > 1 else ""
    for k in side.used:
        x1, y1, x2, y2 = _box(side.faces[k])
        print(f"{path}: face {k + 1} of {len(side.faces)}{why}, box ({x1}, {y1}, {x2}, {y2})")


def cmd_compare(args: argparse.Namespace) -> int:
    from facefleet.engine.pipeline import FaceEngine

    comparison = _compared(args, FaceEngine.from_settings(_settings(args)))
    first, second = comparison.sides
    threshold = comparison.threshold
    similarity = round(comparison.similarity, 4) + 0.0
    if args.json:
        payload = {
            "similarity": similarity,
            "threshold": threshold,
            "same_person": comparison.same_person,
            "recognizer": comparison.recognizer,
            "a": _side_json(args.a, first),
            "b": _side_json(args.b, second),
        }
        if args.all_pairs:
            payload["pairs"] = [
                {
                    "face_a": p.a + 1,
                    "face_b": p.b + 1,
                    "similarity": round(p.similarity, 4) + 0.0,
                    "same_person": p.same_person,
                }
                for p in comparison.pairs()
            ]
        print(json.dumps(payload))
        return 0
    _print_side(args.a, first)
    _print_side(args.b, second)
    rec = f"threshold {threshold} for {comparison.recognizer}"
    if args.all_pairs:
        _print_matrix(args, first, second, comparison.scores, threshold)
        a, b = comparison.best
        rec = f"the most similar pair: face {a + 1} of A, face {b + 1} of B; {rec}"
    verdict = "same person" if comparison.same_person else "different people"
    print(f"similarity {similarity:.4f} ({verdict}; {rec})")
    return 0


def _print_matrix(args: argparse.Namespace, first: Any, second: Any, scores: Any, threshold: float) -> None:
    """Rows: the faces of A; columns: the faces of B; * marks a pair at or above the threshold."""
    print(f"similarity of every pair (rows: {args.a}, columns: {args.b}; * same person):")
    print(" " * 8 + "".join(f"{'face ' + str(j + 1):>10}" for j in second.used))
    for r, i in enumerate(first.used):
        cells = "".join(
            f"{round(float(scores[r, c]), 4) + 0.0:>9.4f}{'*' if scores[r, c] >= threshold else ' '}"
            for c in range(len(second.used))
        )
        print(f"{'face ' + str(i + 1):8}{cells}")


# ---------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    """Check what can be checked before gunicorn starts (settings, model files), so a bad
    configuration is one line and a non-zero exit rather than workers failing to boot; then run
    gunicorn in this process with the settings object (each worker builds its app from it)."""
    from facefleet.models.modelfiles import require_model_file

    settings = _settings(args, host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    # prometheus_client reads its folder from the environment when it is first imported (by the app's modules,
    # here already: their metrics write their files there at once; gunicorn's on_starting empties it after).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_path
    try:
        Path(settings.metrics_path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacefleetError(f"cannot create the metrics folder {settings.metrics_path}: {exc.strerror}") from None
    from facefleet.settings.keys import load_keys

    load_keys(settings)
    manifest = load_manifest()
    for name in (
        settings.models.det_name or manifest.default_detection,
        settings.models.rec_name or manifest.default_recognition,
    ):
        require_model_file(manifest.get(name), settings.models.models_dir, settings.models.verify_models)
    from facefleet.ops.ports import require_free

    # Before "serving on": gunicorn would retry a taken port for seconds, then fail in its own words.
    require_free(settings.server.host, settings.server.port, "--port or FACEFLEET_PORT")
    _cap_malloc_arenas()
    url_host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    print(
        f"facefleet serving on http://{url_host}:{settings.server.port}  (API docs: http://{url_host}:{settings.server.port}/docs)",
        flush=True,
    )
    from facefleet.cli.gunicorn_conf import service_application

    service_application(settings).run()
    return 0  # not reached: gunicorn's master exits itself


def _cap_malloc_arenas() -> None:
    """glibc's malloc arenas capped at 2 in gunicorn's master, inherited by its workers (facefleet.ops.malloc)."""
    from facefleet.ops.malloc import cap_arenas

    cap_arenas()


# ---------------------------------------------------------------- exporter
def cmd_exporter(args: argparse.Namespace) -> int:
    from facefleet.ops.client import TrustSource, key_source
    from facefleet.ops.exporter import build_registry, serve

    settings = _settings(
        args,
        exporter_host=args.host,
        exporter_port=args.port,
        sysfs_root=args.root,
        service_url=args.service_url,
        metrics_dir=args.metrics_dir,
        ca_file=args.ca_file,
    )
    service_url = settings.metrics.service_url or f"http://127.0.0.1:{settings.server.port}"
    key = key_source(None, args.api_key_file)
    key.read()  # a key file named but unreadable stops start-up with one line; read again at every probe
    tls = TrustSource(settings.metrics.ca_file, "FACEFLEET_CA_FILE")  # read again when the roles replace it
    registry = build_registry(
        Path(settings.metrics_path), Path(settings.jetson.sysfs_root), service_url, settings.jetson.nvpmodel, key, tls
    )
    serve(settings.metrics.exporter_host, settings.metrics.exporter_port, registry)
    return 0


# ---------------------------------------------------------------- dashboard
def cmd_dashboard(args: argparse.Namespace) -> int:
    """Validate the dashboard's settings here (one line on error), then run gunicorn with them."""
    from facefleet.settings import DashboardSettings

    flags = {
        "host": args.host,
        "port": args.port,
        "targets_file": args.targets_file,
        "prometheus_url": args.prometheus_url,
    }
    settings = DashboardSettings.from_env(**flags)
    if not settings.targets_file and not settings.targets and not settings.prometheus_url:
        raise FacefleetError(
            "no appliances: set FACEFLEET_DASHBOARD_TARGETS_FILE (file_sd JSON), "
            "FACEFLEET_DASHBOARD_TARGETS (host:port,...) or FACEFLEET_DASHBOARD_PROMETHEUS_URL"
        )
    settings.require_login_off_loopback()
    from facefleet.ops.ports import require_free

    require_free(settings.host, settings.port, "--port or FACEFLEET_DASHBOARD_PORT")
    print(f"facefleet dashboard on http://{settings.host}:{settings.port}/", flush=True)
    from facefleet.dashboard.gunicorn_conf import dashboard_application

    dashboard_application(settings).run()
    return 0  # not reached: gunicorn's master exits itself


# ---------------------------------------------------------------- bench
def cmd_bench_providers(args: argparse.Namespace) -> int:
    from facefleet.ops.bench import bench_providers, plot, table, write_json

    settings, manifest = _settings(args), load_manifest()
    models = args.names or [
        settings.models.det_name or manifest.default_detection,
        settings.models.rec_name or manifest.default_recognition,
    ]
    report = bench_providers(settings, models, args.runs, args.warmup)
    to_stdout = args.json == "-"  # verify.yml gathers the JSON; the table then goes to stderr
    print(table(report), file=sys.stderr if to_stdout else sys.stdout)
    if to_stdout:
        print(json.dumps(report, indent=2))
    elif args.json:
        write_json(report, Path(args.json))
    if args.plot:
        plot(report, Path(args.plot))
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def cmd_bench_load(args: argparse.Namespace) -> int:
    from facefleet.ops import loadtest
    from facefleet.ops.client import key_source, tls_context
    from facefleet.settings import MetricsSettings

    loadtest.require_loopback(args.url, args.allow_remote)
    headers = key_source(args.api_key, args.api_key_file).headers()
    ca_file = args.cacert or MetricsSettings.from_env().ca_file
    tls = tls_context(ca_file, "--cacert" if args.cacert else "FACEFLEET_CA_FILE")
    images = [Path(p) for p in args.images]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise FacefleetError(f"cannot read {', '.join(missing)}")
    report = loadtest.run(args.url, images, args.clients, args.seconds, args.requests, headers=headers, tls=tls)
    shown = {k: v for k, v in report.items() if k != "timeline"}
    print(json.dumps(shown, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.plot:
        loadtest.plot(report, Path(args.plot))
    failed = loadtest.mostly_failed(report, with_key=bool(headers))
    if failed:
        print(f"facefleet: {failed}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- gallery
def _gallery_store(settings: Settings) -> Any:
    from facefleet.app.galleries import open_store

    return open_store(settings)


def _write_bundle(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise FacefleetError(f"cannot write {path}: {exc.strerror}") from None


def cmd_gallery_build(args: argparse.Namespace) -> int:
    from facefleet.app.enrol import BuildGallery, build_gallery

    built = build_gallery(_settings(args), BuildGallery(Path(args.folder), args.name, args.version))
    out = Path(args.out or f"{built.name}.gallery.zip")
    _write_bundle(out, built.data)
    for line in built.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{out}: {human_size(len(built.data))}")
    return 0


def cmd_gallery_import(args: argparse.Namespace) -> int:
    from facefleet.app.galleries import ImportBundle, import_bundle

    settings = _settings(args)
    try:
        data = Path(args.bundle).read_bytes()
    except OSError as exc:
        raise FacefleetError(f"cannot read {args.bundle}: {exc.strerror}") from None
    done = import_bundle(_gallery_store(settings), ImportBundle(data))
    g, state = done.gallery, "imported" if done.changed else "unchanged"
    print(f"{state}: {g.name} version {g.version}, {g.subjects} subjects, {g.faces} faces")
    return 0


def cmd_gallery_export(args: argparse.Namespace) -> int:
    from facefleet.app.galleries import export_bundle

    exported = export_bundle(_gallery_store(_settings(args)), args.name)
    _write_bundle(Path(args.out or f"{exported.name}.gallery.zip"), exported.data)
    return 0


def cmd_gallery_check(args: argparse.Namespace) -> int:
    """Stored names the rule refuses, one per line (repr: a newline shows as \\n); exit 1 while any is left."""
    from facefleet.app.galleries import check_names

    checked = check_names(_gallery_store(_settings(args)), repair=args.repair)
    if not checked.bad:
        print("every gallery name is valid")
        return 0
    for old, new in checked.repaired:
        print(f"repaired: {old!r} -> {new!r}")
    for name, why in checked.failed:
        print(f"not repaired: {name!r}: {why}")
    left = () if args.repair else checked.bad
    for name in left:
        print(f"bad name: {name!r} (facefleet gallery check --repair renames it without the surrounding whitespace)")
    return 1 if left or checked.failed else 0


def cmd_gallery_list(args: argparse.Namespace) -> int:
    from facefleet.app.galleries import list_galleries

    for g in list_galleries(_gallery_store(_settings(args))):
        print(f"{g.name}\tversion {g.version}\t{g.subjects} subjects\t{g.faces} faces\t{g.recognizer}")
    return 0


# ---------------------------------------------------------------- parser
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        "engine (each also an environment variable, see docs/configuration.md)",
        "On an installed appliance, every command but serve and exporter starts from its "
        "/etc/facefleet/service.env (FACEFLEET_APPLIANCE_ENV=none ignores it); variables and flags win over it.",
    )
    group.add_argument(
        "--models-dir", help="model files folder [FACEFLEET_MODELS_DIR, default ./models or the appliance's]"
    )
    group.add_argument("--cache-dir", help="prepared models and engine caches [FACEFLEET_CACHE_DIR]")
    group.add_argument("--providers", type=parse_providers, help="chain, e.g. tensorrt,cuda,cpu [FACEFLEET_PROVIDERS]")
    group.add_argument("--det", help="detector manifest name [FACEFLEET_DET_NAME]")
    group.add_argument("--rec", help="recognizer manifest name [FACEFLEET_REC_NAME]")
    group.add_argument("--shape-policy", choices=("fixed", "fit"), help="detector input shape [FACEFLEET_SHAPE_POLICY]")
    group.add_argument("-v", "--verbose", action="store_true", help="log what happens (provider fallbacks, prepare)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="facefleet", description=__doc__, parents=[common])
    parser.add_argument("--version", action="version", version=f"facefleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    _model_commands(sub, common)
    _gallery_commands(sub, common)
    _run_commands(sub, common)
    return parser


def _gallery_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    gallery = sub.add_parser("gallery", help="build, import and export galleries for 1:N search").add_subparsers(
        dest="action", required=True
    )
    p = gallery.add_parser("build", parents=[common], help="a bundle from a folder of SUBJECT/PHOTO.jpg")
    p.add_argument("folder")
    p.add_argument("--name", help="gallery name (default: the folder's name)")
    p.add_argument("--out", help="bundle file (default: NAME.gallery.zip)")
    p.add_argument("--version", type=int, help="bundle version (default: the build time in seconds)")
    p.set_defaults(func=cmd_gallery_build)
    p = gallery.add_parser("import", parents=[common], help="install a bundle into this appliance's galleries")
    p.add_argument("bundle")
    p.set_defaults(func=cmd_gallery_import)
    p = gallery.add_parser("export", parents=[common], help="write a gallery of this appliance as a bundle")
    p.add_argument("name")
    p.add_argument("--out", help="bundle file (default: NAME.gallery.zip)")
    p.set_defaults(func=cmd_gallery_export)
    p = gallery.add_parser("list", parents=[common], help="this appliance's galleries")
    p.set_defaults(func=cmd_gallery_list)
    p = gallery.add_parser("check", parents=[common], help="stored gallery names the name rule refuses")
    p.add_argument("--repair", action="store_true", help="rename each to its name without surrounding whitespace")
    p.set_defaults(func=cmd_gallery_check)


def _model_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser("models", help="list, verify, prepare and pull model files").add_subparsers(
        dest="action", required=True
    )
    p = models.add_parser("list", parents=[common], help="every model the manifest knows")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("verify", parents=[common], help="sha256, loadability and layout of model files")
    p.add_argument("names", nargs="*", help="default: every model present, plus the default pack")
    p.set_defaults(func=cmd_models_verify)
    p = models.add_parser("prepare", parents=[common], help="write the prepared (fixed) copies into the cache")
    p.add_argument("names", nargs="*", help="default: the configured or default pack")
    p.add_argument("--size", type=parse_size, help="fix a dynamic detector's input to WIDTH,HEIGHT (TensorRT)")
    p.set_defaults(func=cmd_models_prepare)
    p = models.add_parser("synth", parents=[common], help="an architecture-faithful model with random weights")
    p.add_argument("name", help="glintr100, scrfd_10g_gnkps (alias scrfd_10g_kps), scrfd_10g_bnkps or scrfd_2.5g")
    p.add_argument("--out", help="file to write (default: the model's file in the models folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_models_synth)
    p = models.add_parser("quantize", parents=[common], help="an INT8 copy (onnxruntime quantization)")
    p.add_argument("name", help="an FP32 model of the manifest; the copy is then called NAME@int8")
    p.add_argument("--mode", choices=("static", "dynamic"), default="static", help="default: static (calibrated)")
    p.add_argument(
        "--images",
        help="photos that calibrate the copy and judge it (its accuracy gate); DIR/<subject>/<photo> labels people",
    )
    p.add_argument("--limit", type=int, default=32, help="most calibration photos used (default 32; the gate uses all)")
    p.set_defaults(func=cmd_models_quantize)
    p = models.add_parser("pull", parents=[common], help="download model files from the manifest's sources")
    p.add_argument("names", nargs="*", help="default: the licence-clean default pack")
    p.set_defaults(func=cmd_models_pull)


def _run_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("providers", parents=[common], help="where each model runs and why (GPU debugging)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("detect", parents=[common], help="detect and embed the faces of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="InsightFace-REST style JSON, embeddings included")
    p.add_argument("--draw", metavar="OUT", help="write annotated images: OUT.jpg for one image, else into folder OUT")
    p.add_argument("--no-embed", action="store_true", help="detection only")
    p.add_argument("--threshold", type=float, help="face score threshold [FACEFLEET_DET_THRESH, else the detector's]")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("serve", parents=[common], help="the InsightFace-REST compatible HTTP service (gunicorn)")
    p.add_argument("--host", help="listen address [FACEFLEET_HOST, default 127.0.0.1]")
    p.add_argument("--port", type=int, help="listen port [FACEFLEET_PORT, default 18080]")
    p.add_argument("--workers", type=int, help="worker processes, each with its own models [FACEFLEET_WORKERS, 1]")
    p.add_argument("--threads", type=int, help="threads per worker [FACEFLEET_THREADS, derived from the queue]")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("exporter", parents=[common], help="Prometheus exporter: service metrics + Jetson hardware")
    p.add_argument("--host", help="listen address [FACEFLEET_EXPORTER_HOST, default 127.0.0.1]")
    p.add_argument("--port", type=int, help="listen port [FACEFLEET_EXPORTER_PORT, default 18090]")
    p.add_argument("--metrics-dir", help="the service's multiprocess folder [FACEFLEET_METRICS_DIR]")
    p.add_argument("--root", help="root of /sys, /etc and /proc to read hardware from [FACEFLEET_SYSFS_ROOT, /]")
    p.add_argument("--service-url", help="service to probe [FACEFLEET_SERVICE_URL, http://127.0.0.1:PORT]")
    p.add_argument(
        "--api-key-file",
        help="file whose first key the probe presents [FACEFLEET_API_KEY_FILE, else FACEFLEET_API_KEYS_FILE]",
    )
    p.add_argument("--ca-file", help="CA certificate an https:// service is verified with [FACEFLEET_CA_FILE]")
    p.set_defaults(func=cmd_exporter)

    p = sub.add_parser("dashboard", help="the fleet dashboard (Flask under gunicorn)")
    p.add_argument("--host", help="listen address [FACEFLEET_DASHBOARD_HOST, default 127.0.0.1]")
    p.add_argument("--port", type=int, help="listen port [FACEFLEET_DASHBOARD_PORT, default 18100]")
    p.add_argument(
        "--targets-file", help="Prometheus file_sd JSON of the appliances [FACEFLEET_DASHBOARD_TARGETS_FILE]"
    )
    p.add_argument(
        "--prometheus-url", help="read the fleet from Prometheus instead [FACEFLEET_DASHBOARD_PROMETHEUS_URL]"
    )
    p.set_defaults(func=cmd_dashboard)

    _bench_commands(sub, common)

    p = sub.add_parser(
        "compare",
        parents=[common],
        help="same person? one face of each of two images (the largest unless chosen), or every pair",
        description="Similarity of a face of image A and a face of image B, same/different by the recognizer's "
        "threshold. Each line names the face used and its box. Faces are numbered from 1 in detection order, "
        "as `facefleet detect` prints them; by default the largest face of each image is used, with a warning "
        "on stderr when an image has more than one.",
    )
    p.add_argument("a", help="first image")
    p.add_argument("b", help="second image")
    p.add_argument("--face-a", type=_face_number, metavar="N", help="use face N of A (numbered as `detect` prints)")
    p.add_argument("--face-b", type=_face_number, metavar="N", help="use face N of B (numbered as `detect` prints)")
    p.add_argument(
        "--all-pairs",
        action="store_true",
        help="compare every face of A with every face of B (a chosen --face-a/--face-b stays fixed): "
        "a similarity matrix, and the verdict of the most similar pair",
    )
    p.add_argument("--json", action="store_true", help="the faces used, their boxes and the similarity as JSON")
    p.set_defaults(func=cmd_compare)


def _bench_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser("bench", help="benchmarks operators run on their own hardware").add_subparsers(
        dest="action", required=True
    )
    p = bench.add_parser("providers", parents=[common], help="each model on each available provider of the chain")
    p.add_argument("names", nargs="*", help="manifest names (default: the configured detector and recognizer)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per model and provider (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--json", help="write the figures to this file ('-': JSON on stdout, the table on stderr)")
    p.add_argument("--plot", help="write a PNG of the run-time distributions (needs facefleet[bench])")
    p.set_defaults(func=cmd_bench_providers)

    p = bench.add_parser("load", help="concurrent clients against a running service (loopback unless allowed)")
    p.add_argument("url", help="the service, e.g. http://127.0.0.1:18080")
    p.add_argument("--image", dest="images", action="append", required=True, help="a photo to send (repeatable)")
    p.add_argument("--clients", type=int, default=8, help="concurrent closed-loop clients (default 8)")
    p.add_argument("--seconds", type=float, default=30, help="longest duration (default 30)")
    p.add_argument("--requests", type=int, default=10_000, help="most requests in all (default 10000)")
    p.add_argument("--allow-remote", action="store_true", help="permit a target that is not this machine")
    p.add_argument("--api-key", help="the service's API key [FACEFLEET_API_KEY]; prefer --api-key-file")
    p.add_argument("--api-key-file", help="file whose first key is sent, e.g. /etc/facefleet/api-keys")
    p.add_argument(
        "--cacert",
        help="CA certificate an https:// URL is verified with (/etc/facefleet/tls/ca.crt) [FACEFLEET_CA_FILE]",
    )
    p.add_argument("--json", help="write the figures, with every request's timing, to this file")
    p.add_argument("--plot", help="write a PNG of latency over time (needs facefleet[bench])")
    p.set_defaults(func=cmd_bench_load)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except FacefleetError as exc:
        print(f"facefleet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
