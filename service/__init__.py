"""facefleet inference service: images in, faces and embeddings out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facefleet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
