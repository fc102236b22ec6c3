"""API errors answered as ``Status`` objects, the shape every Kubernetes client parses."""

from __future__ import annotations

from typing import Any

# The reason each code carries in a real API server's Status (k8s.io/apimachinery pkg/apis/meta/v1/types.go,
# StatusReason* constants); kubectl prints it as "Error from server (<reason>)".
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error the server answers with ``status`` and a ``Status`` body."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or _REASONS.get(status, "Unknown")

    def body(self) -> dict[str, Any]:
        """The ``v1 Status`` document for this error."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }


def not_found(kind_plural: str, name: str) -> ApiError:
    """The 404 the real server returns for a missing object."""
    return ApiError(404, f'{kind_plural} "{name}" not found')
