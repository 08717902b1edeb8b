"""InsightFace-REST's environment variables that facefleet reads under no setting of its own, each with what it
does here, so `docker run -e ...` lines written for InsightFace-REST start unchanged and the log says where a
variable has no effect (the ones that do have one are aliases of settings: docs/configuration.md).

Its names are read exactly as spelled here (upper case); InsightFace-REST also took them in any case.
"""

from __future__ import annotations

from collections.abc import Mapping

WITHOUT_EFFECT = {
    "INFERENCE_BACKEND": "the backend is onnxruntime's provider chain here: set FACEFLEET_PROVIDERS "
    "(tensorrt,cuda,cpu); `trt` needs no engine files of InsightFace-REST's",
    "TRITON_URI": "facefleet runs its models in process: there is no Triton client",
    "GA_MODEL": "InsightFace-REST itself never read it (its examples' typo): set GA_NAME",
    "DEF_SSLV3_HACK": "image downloads always verify TLS with modern ciphers here",
    "USE_NVJPEG": "images are decoded by Pillow on the CPU",
    "FACE_MODEL_CLASS": "the pipeline is facefleet's own",
    "IFR_VERSION": "/info's version is facefleet's",
    "KEEP_ALL": "InsightFace-REST's removed option; faces are filtered by threshold, limit_faces and min_face_size",
    "DET_THRESH": "InsightFace-REST's old name: set DEF_DET_THRESH or FACEFLEET_DET_THRESH",
}


def without_effect(environ: Mapping[str, str]) -> list[str]:
    """One line per InsightFace-REST variable set in `environ` that changes nothing here, saying why."""
    return [f"{name} is set and has no effect: {why}" for name, why in WITHOUT_EFFECT.items() if environ.get(name)]
