"""The dashboard's Starlette app: the page, its static files (plotly.js from the installed
plotly package) and a read-only JSON API over the runs found below one path."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import RznasError
from ..run_reader import find_runs, iter_readers, summarize
from .data import call_payload, dumps, run_payload

STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@lru_cache(maxsize=None)
def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


@lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    """The plotly.js bundle that ships inside the plotly Python package (MIT licence)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def create_app(root: Path, *, refresh_s: float = 2.0) -> Starlette:
    """The dashboard for the run directory ``root`` or every run below it (rescanned on each
    listing, so runs started later appear). Run ids are paths relative to ``root``; only ids of
    discovered runs are served."""
    root = Path(root)

    def runs_by_id() -> dict[str, Path]:
        return {(str(p.relative_to(root)) if p != root else "."): p for p in find_runs(root)}

    def json_response(value: object, status: int = 200) -> Response:
        return Response(dumps(value), status_code=status, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    def lookup(request: Request) -> Path | None:
        return runs_by_id().get(request.query_params.get("run", "."))

    async def page(request: Request) -> Response:
        html = _static("index.html").decode().replace("{{REFRESH_MS}}", str(int(refresh_s * 1000)))
        return Response(html, media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return Response(_plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
        if name not in STATIC:
            return Response("not found", status_code=404)
        return Response(_static(name), media_type=STATIC[name])

    def api_runs(request: Request) -> Response:
        ids = runs_by_id()
        listing = []
        for run_id, reader in zip(ids, iter_readers(list(ids.values()))):
            listing.append({"id": run_id, **summarize(reader, accuracy=False).to_dict()})
        return json_response({"root": str(root), "refresh_ms": int(refresh_s * 1000), "runs": listing})

    def api_run(request: Request) -> Response:
        run_dir = lookup(request)
        if run_dir is None:
            return json_response({"error": "no such run"}, 404)
        return json_response(run_payload(run_dir))

    def api_call(request: Request) -> Response:
        run_dir = lookup(request)
        try:
            call_id = int(request.query_params.get("id", ""))
        except ValueError:
            return json_response({"error": "id must be an integer"}, 400)
        payload = call_payload(run_dir, call_id) if run_dir is not None else None
        if payload is None:
            return json_response({"error": "no such run or call"}, 404)
        return json_response(payload)

    async def rznas_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=500)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/api/runs", api_runs),
            Route("/api/run", api_run),
            Route("/api/call", api_call),
        ],
        exception_handlers={RznasError: rznas_error},
    )
