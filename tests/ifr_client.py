"""InsightFace-REST's published Python client (`ifr_clients`, InsightFace-REST fb854d8), as it behaves on the wire:
the requests it sends and the checks it makes on the answers. Written from its documented behaviour (the facts
are in docs/insightface-rest.md); its code is not copied. The real client cannot be installed here (it is not
on PyPI), so this stands in for it, and every rule below is one the real client applies:

- `server_info()`: GET /info, then reads `models.inference_backend, det_name, rec_name, rec_batch_size,
  det_batch_size, max_size` (a missing key is a KeyError).
- `extract()`: POST /extract with its fixed body (extract_ga false, every option sent), `mode="data"` sends raw
  bytes under msgpack (Content-Type `application/msgpack`, Accept `application/x-msgpack`) or base64 under JSON;
  `mode="paths"` sends `images.urls`. An answer is msgpack-decoded only when its Content-Type is exactly
  `application/x-msgpack`. `raw_response=False` validates it with its pydantic (v2) models below, where every
  `Optional[...]` without a default is a REQUIRED key (null allowed).
- Keys: the client has no key option; an operator adds one in one line on its requests session.
- `draw_detections()` / `draw_multipart()`: InsightFace-REST's documented draw endpoints (its client has no method
  for them; its users call them so): the first image back as JPEG bytes.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

import msgpack
import requests
from pydantic import BaseModel, ConfigDict


class Took(BaseModel):
    model_config = ConfigDict(extra="ignore")
    total_ms: Optional[float]  # noqa: UP045


class FacesResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")
    num_det: Optional[int]  # noqa: UP045
    prob: Optional[float]  # noqa: UP045
    size: Optional[int]  # noqa: UP045
    bbox: Optional[list[int]]  # noqa: UP045
    landmarks: Optional[list[list]]  # noqa: UP045
    norm: Optional[float]  # noqa: UP045
    vec: Optional[list]  # noqa: UP045
    facedata: Optional[str]  # noqa: UP045


class ImageResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: str
    took_ms: Optional[float]  # noqa: UP045
    faces: Optional[list[FacesResponse]]  # noqa: UP045


class RecognitionResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")
    took: Took
    data: list[ImageResponse]


class IFRClient:
    """The client's calls, against `server` (e.g. https://127.0.0.1:18080)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.sess = requests.Session()  # where an operator puts the key: client.sess.headers["X-API-Key"] = KEY

    def server_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.sess.get(f"{self.server}/info", timeout=30).json()
        models = info["models"]
        for key in ("inference_backend", "det_name", "rec_name", "rec_batch_size", "det_batch_size", "max_size"):
            models[key]
        return info

    def extract(
        self,
        data: list[bytes] | list[str],
        mode: str = "paths",
        threshold: float = 0.6,
        extract_embedding: bool = True,
        return_face_data: bool = False,
        return_landmarks: bool = False,
        embed_only: bool = False,
        limit_faces: int = 0,
        min_face_size: int = 0,
        img_req_headers: dict[str, str] | None = None,
        use_msgpack: bool = True,
        raw_response: bool = True,
    ) -> Any:
        images: dict[str, Any]
        if mode == "data":
            blobs = [d if isinstance(d, bytes) else d.encode() for d in data]
            images = {"data": blobs if use_msgpack else [base64.b64encode(b).decode("ascii") for b in blobs]}
        else:
            images = {"urls": data}
        body = {
            "images": images,
            "threshold": threshold,
            "extract_ga": False,
            "extract_embedding": extract_embedding,
            "return_face_data": return_face_data,
            "return_landmarks": return_landmarks,
            "embed_only": embed_only,
            "limit_faces": limit_faces,
            "min_face_size": min_face_size,
            "msgpack": use_msgpack,
            "img_req_headers": img_req_headers or {},
        }
        if use_msgpack:
            headers = {"content-type": "application/msgpack", "accept": "application/x-msgpack"}
            resp = self.sess.post(f"{self.server}/extract", data=msgpack.dumps(body), headers=headers, timeout=120)
        else:
            resp = self.sess.post(f"{self.server}/extract", json=body, timeout=120)
        if resp.headers.get("content-type") == "application/x-msgpack":
            content = msgpack.loads(resp.content)
        else:
            content = resp.json()
        if raw_response:
            return content
        return RecognitionResponse.model_validate(content)

    def draw_detections(self, image: bytes, **options: Any) -> requests.Response:
        body = {"images": {"data": [base64.b64encode(image).decode("ascii")]}, **options}
        return self.sess.post(f"{self.server}/draw_detections", json=body, timeout=120)

    def draw_multipart(self, image: bytes, **form: str) -> requests.Response:
        files = {"file": ("image.jpg", image, "image/jpeg")}
        return self.sess.post(f"{self.server}/multipart/draw_detections", files=files, data=form, timeout=120)
