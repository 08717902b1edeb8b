"""The refusal every contract check raises: an HTTP status, a stable code and a sentence for the client.

It lives with the contract, not in `facefleet.api`, so the contract's models can be imported (by the CLI, by
the application layer's callers) without the Flask app; `facefleet.api.errors` turns it into a response.
"""

from __future__ import annotations


class APIError(Exception):
    """A request the service refuses: status, stable code, a sentence for the client."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
