"""``/docs``: Swagger UI served from this process, so the docs work with no internet.

FastAPI's default page loads Swagger UI from a CDN; the assets here come from
the ``fastapi-offline`` package (Swagger UI 5, which reads OpenAPI 3.1). If it
is not installed the page falls back to FastAPI's CDN version.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response


def _assets() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    path = Path(fastapi_offline.__file__).parent / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def install_docs(app: FastAPI) -> None:
    assets = _assets()
    files = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
             "favicon.png": "image/png"}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        if assets is None:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API docs")
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js", swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def swagger_asset(name: str) -> Response:
        if assets is None or name not in files:
            return Response(status_code=404)
        return Response((assets / name).read_bytes(), media_type=files[name],
                        headers={"Cache-Control": "public, max-age=86400"})
