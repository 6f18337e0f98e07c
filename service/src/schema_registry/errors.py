"""The API error type and its JSON body {error_code, message, details, request_id}."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API reports to the client with a status and a stable code."""

    def __init__(self, status: int, error_code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details = details if details is not None else {}

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "message": self.message,
            "details": self.details,
            "request_id": request_id,
        }


class InvalidSchemaError(Exception):
    """A schema document that its format's parser rejects."""


class ConfigError(Exception):
    """Invalid configuration; the message names the offending key."""
