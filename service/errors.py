"""Errors with a stable machine-readable code and a message fit for an operator or a client.

Every failure a user can cause or fix is one of these, so callers (CLI, HTTP) print one clear
line instead of a traceback.
"""

from __future__ import annotations


class FacefleetError(Exception):
    """Base class: `code` is stable for clients, `str(error)` is the human sentence."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageError(FacefleetError):
    """An input image cannot be used; only that image fails, never the request. `status` is what a
    route that takes a single image answers with it."""

    code = "bad_image"
    status = 400


class NoFaceError(ImageError):
    """A readable image in which no face was found, where one was needed."""

    code = "no_face"


class ImageTooLargeError(ImageError):
    code = "image_too_large"


class UnsupportedImageError(ImageError):
    """A readable image in a pixel mode facefleet cannot turn into RGB (the sentence names format and mode)."""

    code = "unsupported_image"
    status = 415


class RequestTooLargeError(FacefleetError):
    """The images of one request declare more pixels in all than the per-request budget: the whole
    request is refused before any image is decoded (HTTP 413), as more images than the limit are."""

    code = "too_many_pixels"
    status = 413


class ModelError(FacefleetError):
    """A model file is missing, corrupt, or does not match its manifest entry."""

    code = "model_error"


class ModelRoleError(ModelError):
    """A model file that opens but does not fit its place (a detector where the recognizer goes, or
    one whose first real inference fails): the service stays unready and says why."""

    code = "model_role"


class ManifestError(FacefleetError):
    code = "manifest_error"


class ConfigError(FacefleetError):
    code = "config_error"


class ProviderError(FacefleetError):
    """No provider of the chain could open and warm up a model."""

    code = "no_provider"


class PullError(FacefleetError):
    code = "pull_failed"
