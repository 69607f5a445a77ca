"""The dashboard's pages and the API documentation, served from files inside the packages.

- `/` redirects to `/ui/`; `/ui/` is the dashboard, a page of plain HTML, JavaScript and CSS
  in `tq_broker/ui/static/` (no build step: what is in the repository is what is served).
- `/docs` (Swagger UI) and `/redoc` (ReDoc) load their scripts from the `fastapi-offline`
  wheel's copy, served at `/docs/assets/`, so they work on a cluster without internet.

The one thing not to break: nothing here loads anything from another origin. The dashboard's
Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(str(resources.files("tq_broker.ui").joinpath("static")))
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline").joinpath("static")))
# Scripts, styles and connections only to this origin; the WebSocket is this origin's too
# (`'self'` covers ws: and wss: of the same host in current browsers).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

# The API docs' pages carry FastAPI's inline bootstrap scripts and styles; everything they
# load must still come from here (ReDoc's bundle would fetch its logo from its CDN otherwise).
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return page


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
async def ui_without_slash() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def dashboard() -> Response:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root_path = request.scope.get("root_path", "")
    return _offline(
        get_swagger_ui_html(
            openapi_url=f"{root_path}/openapi.json",
            title="taskqueue broker - Swagger UI",
            oauth2_redirect_url=f"{root_path}/docs/oauth2-redirect",
            swagger_js_url=f"{root_path}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root_path}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root_path}/docs/assets/favicon.png",
        )
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root_path = request.scope.get("root_path", "")
    return _offline(
        get_redoc_html(
            openapi_url=f"{root_path}/openapi.json",
            title="taskqueue broker - ReDoc",
            redoc_js_url=f"{root_path}/docs/assets/redoc.standalone.js",
            redoc_favicon_url=f"{root_path}/docs/assets/favicon.png",
            with_google_fonts=False,
        )
    )


def static_mounts() -> list[tuple[str, StaticFiles, str]]:
    """(path, app, name) of the static file trees to mount on the application."""
    return [
        ("/ui/static", StaticFiles(directory=STATIC_DIR), "ui-static"),
        ("/docs/assets", StaticFiles(directory=DOCS_ASSETS_DIR), "docs-assets"),
    ]
