"""One JSON error shape for every 4xx: ``{"error", "message", "field", "fields"}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# Tags of the single/batch union in POST /v1/events; not part of a field's path.
_UNION_TAGS = {"single", "batch"}


class ApiError(Exception):
    """An error answered as JSON with ``status`` (always 4xx for bad input)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None, fields: Any = None) -> dict:
    out: dict[str, Any] = {"error": code, "message": message, "field": field}
    if fields is not None:
        out["fields"] = fields
    return out


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "batch", "events", 3, "item_id")`` -> ``"events[3].item_id"``."""
    parts: list[str] = []
    for p in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if p in _UNION_TAGS:
            continue
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or str(loc[0] if loc else "body")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": field_path(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            error_body(
                "invalid_request", f"{first['field']}: {first['message']}", first["field"], fields
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: answer without a traceback; the log has the details.
        import logging

        logging.getLogger("frugalrec.serve").exception(
            "unhandled error on %s", request.scope.get("route_path", "?")
        )
        return JSONResponse(error_body("internal", "internal error"), 500)
