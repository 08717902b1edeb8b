"""`facefleet`: the operator's command line (models, providers, detect, compare)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import __version__
from .api.extract import face_json
from .api.params import ExtractParams
from .config import Settings, _parse_providers, _parse_size
from .errors import FacefleetError
from .manifest import ModelSpec, load_manifest
from .pipeline import FaceEngine, ImageResult

log = logging.getLogger("facefleet")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """Environment settings with the command line's flags on top."""
    return Settings.from_env(
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
        here = "yes" if (Path(settings.models_dir) / spec.file).is_file() else "no"
        mark = "*" if spec.name in defaults else " "
        print(f"{spec.name + mark:24} {spec.task:11} {spec.family:7} {spec.file:44} {here:5} {spec.licence}")
    print(f"\n* default pack; models folder: {settings.models_dir}; manifest: {manifest.path}")
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from .verify import verify_model

    settings, manifest = _settings(args), load_manifest()
    specs = _selected(args.names, [])
    if not specs:  # everything that is present, plus the defaults, which must be
        defaults = {manifest.default_detection, manifest.default_recognition}
        specs = [
            s for s in manifest.models.values() if s.name in defaults or (Path(settings.models_dir) / s.file).is_file()
        ]
    problems = [p for spec in specs for p in verify_model(spec, settings.models_dir)]
    for problem in problems:
        print(problem)
    print(f"{len(specs)} models checked, {len(problems)} problems")
    return 1 if problems else 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from .loader import trt_fixed_hw
    from .modelfiles import require_model_file
    from .prepare import prepare_model

    settings, manifest = _settings(args), load_manifest()
    for spec in _selected(args.names, [manifest.default_detection, manifest.default_recognition]):
        path, digest = require_model_file(spec, settings.models_dir, settings.verify_models)
        fixed = None
        if args.size and spec.task == "detection" and not spec.fixed_hw:
            fixed = (args.size[1], args.size[0])
        fixed = fixed or trt_fixed_hw(spec, settings)
        out = prepare_model(spec, path, digest, settings.cache_dir, fixed)
        print(f"{spec.name}: {'unchanged, runs as is' if out == path else out}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from .pull import pull

    settings, manifest = _settings(args), load_manifest()
    failed = 0
    for spec in _selected(args.names, [manifest.default_detection, manifest.default_recognition]):
        try:
            path, fetched = pull(spec, settings.models_dir, settings.cache_dir)
            print(f"{spec.name}: {'fetched' if fetched else 'already present'} {path}")
        except FacefleetError as exc:
            print(f"facefleet: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_models_synth(args: argparse.Namespace) -> int:
    from .synth import ALIASES, synthesize

    settings, manifest = _settings(args), load_manifest()
    name = ALIASES.get(args.name, args.name)
    spec = manifest.get(name)
    if args.out:
        target = Path(args.out)
    elif spec.sha256:
        print(
            f"facefleet: {name} has published weights; give --out so random ones never take their place",
            file=sys.stderr,
        )
        return 2
    else:
        target = Path(settings.models_dir) / spec.file
    if target.exists() and not args.force:
        print(f"facefleet: {target} exists; --force replaces it with random weights", file=sys.stderr)
        return 2
    path, parameters = synthesize(name, target, args.seed)
    print(f"{name}: {parameters / 1e6:.2f} M parameters, random weights (for speed only) -> {path}")
    return 0


def cmd_models_quantize(args: argparse.Namespace) -> int:
    from .quantize import calibration_images, quantize

    settings, manifest = _settings(args), load_manifest()
    spec = manifest.get(args.name)
    mode = args.mode
    if mode == "static" and not args.images:
        print(
            "facefleet: static quantization calibrates on photos with faces: give --images DIR "
            "(or --mode dynamic, which needs none but is slower than FP32 for CNNs on CPU)",
            file=sys.stderr,
        )
        return 2
    photos = calibration_images(Path(args.images), args.limit) if mode == "static" else []
    path = quantize(spec, settings, mode, photos)
    print(f"{spec.name}: {mode} INT8 -> {path}; use it as {spec.name}@int8")
    return 0


# ---------------------------------------------------------------- providers
def cmd_providers(args: argparse.Namespace) -> int:
    from .diagnose import environment_report
    from .loader import load_model

    settings, manifest = _settings(args), load_manifest()
    if not args.verbose:  # each fallback's reason is in the report: the same lines on stderr add nothing
        logging.getLogger("service.runtime").setLevel(logging.ERROR)
    report: dict[str, Any] = {
        "environment": environment_report(settings.device_id),
        "chain": list(settings.providers),
        "models": {},
    }
    for name in (settings.det_name or manifest.default_detection, settings.rec_name or manifest.default_recognition):
        try:
            opened, _ = load_model(manifest.get(name), settings)
            report["models"][name] = opened.report()
        except FacefleetError as exc:
            report["models"][name] = {"error": str(exc)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_providers(report)
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
            print(f"  {short:9} {probe['problem'] or 'libraries, driver and device present'}")
    print(f"chain: {' -> '.join(report['chain'])}")
    for name, info in report["models"].items():
        if "error" in info:
            print(f"{name}: FAILED: {info['error']}")
            continue
        print(f"{name}: runs on {info['active_provider']} (warm-up {info['warmup_ms']} ms){_placement(info)}")
        for attempt in info["attempts"]:
            print(f"  {attempt['provider']:9} {'ok' if attempt['ok'] else 'no: ' + attempt['reason']}")


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
# `facefleet detect --json` answers like /extract with landmarks asked for.
JSON_FIELDS = ExtractParams(images=[], threshold=0.0, limit_faces=0, min_face_size=0, return_landmarks=True)


def _print_result(path: str, result: ImageResult) -> None:
    if not result.ok:
        print(f"{path}: failed: {result.error}")
        return
    h, w = result.shape or (0, 0)
    print(f"{path}: {len(result.faces)} face(s) in {w}x{h}")
    for k, face in enumerate(result.faces, 1):
        x1, y1, x2, y2 = face.bbox
        line = f"  face {k}: box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}) score {face.score:.3f}"
        if face.embedding is not None:
            head = ", ".join(f"{v:+.3f}" for v in face.embedding[:4])
            line += f"; embedding {face.embedding.size}-d, norm {face.norm:.2f}, [{head}, ...]"
        print(line)


def _draw(paths: list[str], results: list[ImageResult], images: list[bytes], out: str) -> None:
    from .decode import decode_image
    from .draw import draw_faces

    target = Path(out)
    # A folder unless OUT names a single image file (it has an image suffix).
    as_dir = (
        len(paths) > 1 or target.is_dir() or target.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp", ".bmp")
    )
    if as_dir:
        target.mkdir(parents=True, exist_ok=True)
    for path, result, data in zip(paths, results, images, strict=True):
        if not result.ok:
            continue
        drawn = draw_faces(decode_image(data), result.faces)
        file = target / f"{Path(path).stem}.faces.jpg" if as_dir else target
        if not cv2.imwrite(str(file), drawn):
            raise FacefleetError(f"cannot write {file}")
        print(f"drew {len(result.faces)} face(s) into {file}", file=sys.stderr)


def _read(paths: list[str]) -> list[bytes]:
    data = []
    for path in paths:
        try:
            data.append(Path(path).read_bytes())
        except OSError as exc:
            raise FacefleetError(f"cannot read {path}: {exc.strerror}") from None
    return data


def cmd_detect(args: argparse.Namespace) -> int:
    settings = _settings(args)
    images = _read(args.images)
    engine = FaceEngine.from_settings(settings, with_recognizer=not args.no_embed)
    results = engine.process(images, embed=not args.no_embed)
    if args.json:
        payload = [
            {
                "image": path,
                "status": "ok" if r.ok else "failed",
                **(
                    {"faces": [face_json(f, i, JSON_FIELDS) for i, f in enumerate(r.faces)]}
                    if r.ok
                    else {"error": {"code": r.error.code, "message": str(r.error)}}
                ),
            }
            for path, r in zip(args.images, results, strict=True)
        ]
        print(json.dumps(payload))
    else:
        det = engine.detector
        print(
            f"detector {det.spec.name} on {det.opened.provider}"
            + (
                f", recognizer {engine.recognizer.spec.name} on {engine.recognizer.opened.provider}"
                if engine.recognizer
                else ""
            )
        )
        for path, result in zip(args.images, results, strict=True):
            _print_result(path, result)
    if args.draw:
        _draw(args.images, results, images, args.draw)
    return 0 if all(r.ok for r in results) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = FaceEngine.from_settings(settings)
    results = engine.process(_read([args.a, args.b]))
    for path, result in zip((args.a, args.b), results, strict=True):
        if not result.ok or not result.faces:
            raise FacefleetError(f"{path}: {result.error or 'no face found'}")
    first, second = (max(r.faces, key=lambda f: f.size) for r in results)
    similarity = float(np.dot(first.embedding, second.embedding))
    assert engine.recognizer is not None
    threshold = engine.recognizer.spec.verify_threshold or 0.4
    same = similarity >= threshold
    if args.json:
        print(json.dumps({"similarity": round(similarity, 4), "threshold": threshold, "same_person": same}))
    else:
        verdict = "same person" if same else "different people"
        print(f"similarity {similarity:.4f} ({verdict}; threshold {threshold} for {engine.recognizer.spec.name})")
    return 0


# ---------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    """Check what can be checked before gunicorn starts (settings, model files), so a bad
    configuration is one line and a non-zero exit rather than workers failing to boot."""
    from .api.auth import load_keys
    from .modelfiles import require_model_file

    settings = _settings(args, host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    load_keys(settings)
    manifest = load_manifest()
    for name in (settings.det_name or manifest.default_detection, settings.rec_name or manifest.default_recognition):
        require_model_file(manifest.get(name), settings.models_dir, settings.verify_models)
    env = dict(os.environ)
    env.update(_as_environment(settings))
    env["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_path
    # One malloc arena per thread would keep each thread's freed image buffers: cap them.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    url_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(
        f"facefleet serving on http://{url_host}:{settings.port}  (API docs: http://{url_host}:{settings.port}/docs)",
        flush=True,
    )
    conf = Path(__file__).with_name("gunicorn_conf.py")
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "service.api.wsgi:app"]
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def _as_environment(settings: Settings) -> dict[str, str]:
    """Settings as FACEFLEET_* variables, so gunicorn's workers rebuild exactly these."""
    from .config import OPTIONS

    env = {}
    for name, spec in OPTIONS.items():
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[spec["env"]] = str(value)
    return env


# ---------------------------------------------------------------- exporter
def cmd_exporter(args: argparse.Namespace) -> int:
    from .client import key_source
    from .exporter import build_registry, serve

    settings = _settings(
        args,
        exporter_host=args.host,
        exporter_port=args.port,
        sysfs_root=args.root,
        service_url=args.service_url,
        metrics_dir=args.metrics_dir,
    )
    service_url = settings.service_url or f"http://127.0.0.1:{settings.port}"
    key = key_source(None, args.api_key_file)
    key.read()  # a key file named but unreadable stops start-up with one line; read again at every probe
    registry = build_registry(
        Path(settings.metrics_path), Path(settings.sysfs_root), service_url, settings.nvpmodel, key
    )
    serve(settings.exporter_host, settings.exporter_port, registry)
    return 0


# ---------------------------------------------------------------- dashboard
def cmd_dashboard(args: argparse.Namespace) -> int:
    """Validate the dashboard's settings here (one line on error), then exec gunicorn."""
    from dashboard.config import DashboardSettings

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
    from .ports import require_free

    require_free(settings.host, settings.port, "--port or FACEFLEET_DASHBOARD_PORT")
    env = dict(os.environ)
    env.update({f"FACEFLEET_DASHBOARD_{k.upper()}": str(v) for k, v in flags.items() if v is not None})
    print(f"facefleet dashboard on http://{settings.host}:{settings.port}/", flush=True)
    conf = Path(__file__).resolve().parent.parent / "dashboard" / "gunicorn_conf.py"
    os.execve(sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(conf), "dashboard.wsgi:app"], env)
    return 0  # not reached


# ---------------------------------------------------------------- bench
def cmd_bench_providers(args: argparse.Namespace) -> int:
    from .bench import bench_providers, plot, table, write_json

    settings, manifest = _settings(args), load_manifest()
    models = args.names or [
        settings.det_name or manifest.default_detection,
        settings.rec_name or manifest.default_recognition,
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
    from . import loadtest
    from .client import key_source

    loadtest.require_loopback(args.url, args.allow_remote)
    headers = key_source(args.api_key, args.api_key_file).headers()
    images = [Path(p) for p in args.images]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise FacefleetError(f"cannot read {', '.join(missing)}")
    report = loadtest.run(args.url, images, args.clients, args.seconds, args.requests, headers=headers)
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
    from .enrol import recognizer_identity
    from .gallery import GalleryStore

    return GalleryStore(settings.gallery_path, recognizer_identity(settings))


def _write_bundle(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise FacefleetError(f"cannot write {path}: {exc.strerror}") from None


def cmd_gallery_build(args: argparse.Namespace) -> int:
    from .enrol import build

    settings = _settings(args)
    data, skipped = build(settings, Path(args.folder), args.name or Path(args.folder).resolve().name, args.version)
    out = Path(args.out or f"{args.name or Path(args.folder).resolve().name}.gallery.zip")
    _write_bundle(out, data)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{out}: {len(data) / 1e6:.2f} MB")
    return 0


def cmd_gallery_import(args: argparse.Namespace) -> int:
    from .bundle import install

    settings = _settings(args)
    try:
        data = Path(args.bundle).read_bytes()
    except OSError as exc:
        raise FacefleetError(f"cannot read {args.bundle}: {exc.strerror}") from None
    info, changed = install(_gallery_store(settings), data)
    state = "imported" if changed else "unchanged"
    print(f"{state}: {info['name']} version {info['version']}, {info['subjects']} subjects, {info['faces']} faces")
    return 0


def cmd_gallery_export(args: argparse.Namespace) -> int:
    from .bundle import export

    data = export(_gallery_store(_settings(args)), args.name)
    _write_bundle(Path(args.out or f"{args.name}.gallery.zip"), data)
    return 0


def cmd_gallery_list(args: argparse.Namespace) -> int:
    for g in _gallery_store(_settings(args)).list():
        print(f"{g['name']}\tversion {g['version']}\t{g['subjects']} subjects\t{g['faces']} faces\t{g['recognizer']}")
    return 0


# ---------------------------------------------------------------- parser
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("engine (each also an environment variable, see docs/configuration.md)")
    group.add_argument("--models-dir", help="model files folder [FACEFLEET_MODELS_DIR, default ./models]")
    group.add_argument("--cache-dir", help="prepared models and engine caches [FACEFLEET_CACHE_DIR]")
    group.add_argument("--providers", type=_parse_providers, help="chain, e.g. tensorrt,cuda,cpu [FACEFLEET_PROVIDERS]")
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
    p.add_argument("--size", type=_parse_size, help="fix a dynamic detector's input to WIDTH,HEIGHT (TensorRT)")
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
    p.add_argument("--images", help="folder of calibration photos (static mode), e.g. ../shared/images")
    p.add_argument("--limit", type=int, default=32, help="most calibration photos used (default 32)")
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
    p.add_argument("--threshold", type=float, help="face score threshold [FACEFLEET_DET_THRESH, default 0.5]")
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

    p = sub.add_parser("compare", parents=[common], help="similarity of the largest faces of two images")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
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
