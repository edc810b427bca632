"""Errors of the use cases. Each carries an HTTP status so the API can map it to a
problem document without knowing the use case; the message is for a person to act on."""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be done as asked; ``str()`` says why and what to do."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class InvalidRequest(ServiceError):
    status = 422
    title = "Unprocessable request"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class NotSupported(ServiceError):
    status = 501
    title = "Not supported by this deployment"


class TooLarge(ServiceError):
    status = 413
    title = "Request too large"


class TransientError(Exception):
    """A failure worth retrying later (storage or database unreachable)."""
