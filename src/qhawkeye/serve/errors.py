"""The server's one error type, answered in OpenAI's shape ``{"error": {"message", "type", "code"}}``.

Kept apart from :mod:`qhawkeye.serve.app` because both the routes and :mod:`qhawkeye.serve.images` raise it.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


class ApiError(Exception):
    """An error answered in OpenAI's shape ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, code: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers

    def response(self) -> JSONResponse:
        kind = ERROR_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        body = {"error": {"message": self.message, "type": kind, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)
