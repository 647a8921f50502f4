"""`/ui`: the operator's dashboard, a page and two files served from this package (no build step,
nothing fetched from elsewhere: the host may be offline). The page draws what the watch stream
(api/watch.py) sends, and reads a model's events and log lines when it is opened."""

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; frame-ancestors 'none'")
"""The page runs only its own files, and cannot be framed by another site."""


def add_ui_routes(app: web.Application) -> None:
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/", page)
    app.router.add_static("/ui/static", STATIC)
    app.on_response_prepare.append(_headers)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/ui"):
        response.headers["Content-Security-Policy"] = _POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
