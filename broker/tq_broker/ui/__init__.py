"""The web dashboard at /ui and the offline API docs (/docs, /redoc): `install(app)` adds them."""

from __future__ import annotations

from fastapi import FastAPI

from tq_broker.ui import overview, pages


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(overview.router)
    for path, files, name in pages.static_mounts():
        app.mount(path, files, name=name)
