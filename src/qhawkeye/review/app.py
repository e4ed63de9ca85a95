"""The review web app: one page showing each pair to review side by side, over a small JSON API.

Routes:

- ``GET /``: the page (``static/index.html``); ``GET /static/{name}``: its script and style sheet. Only the
  files in :data:`STATIC_FILES` are served, read once at start.
- ``GET /api/info``: ``{"total", "reviewer_default", "decisions"}``.
- ``GET /api/pairs?reviewer=NAME``: ``{"reviewer", "pairs": [{"id", "group_id", "degradation",
  "decision"}], "progress": {"reviewed", "total"}}``, ``decision`` being this reviewer's (or null).
- ``POST /api/decision`` ``{"pair_id", "reviewer", "decision"}``: stored and committed before the answer.
- ``POST /api/undo`` ``{"reviewer"}``: undoes this reviewer's latest decision; ``{"undone": {"pair_id",
  "decision"} | null, "progress"}``.
- ``GET /api/combined``: ``{pair_id: {"decision", "votes"}}`` for every pair, by the combine rule of
  :mod:`qhawkeye.review.store`.
- ``GET /image/{pair_id}/{original|degraded}``: the file the manifest lists for that pair. The id is only a
  key into the pairs under review (it may hold ``/``, as ids made from relative file names do), never a
  path: an id that is not a pair under review, or another side, is 404.

Reviewers are not authenticated: each request names its reviewer. The app is for trusted people on one
machine (it binds 127.0.0.1 by default); anyone who can reach it can vote under any name. Given
``allowed_hosts``, a request with another ``Host`` header gets 400; every response carries ``nosniff``, a
same-origin Content-Security-Policy and no-framing headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from qhawkeye.review.pairs import ReviewPair, review_pairs
from qhawkeye.review.store import DECISIONS, ReviewStore, check_reviewer, combined_decisions

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"index.html": "text/html", "review.js": "text/javascript", "review.css": "text/css"}
SIDES = ("original", "degraded")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair_id: str
    reviewer: str
    decision: str


class Undo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str


def _load_static() -> dict[str, bytes]:
    files = {}
    for name in STATIC_FILES:
        path = STATIC_DIR / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the review page ships as package data (review/static/*); reinstall qhawkeye"
            )
        files[name] = path.read_bytes()
    return files


def _reviewer(name: str) -> str:
    try:
        return check_reviewer(name)
    except ValueError as err:
        raise HTTPException(400, str(err)) from err


class _Handlers:
    """The routes over one list of pairs and one store."""

    def __init__(self, pairs: list[ReviewPair], store: ReviewStore, reviewer_default: str | None):
        self.pairs = {p.id: p for p in pairs}
        self.store = store
        self.reviewer_default = reviewer_default
        self.static = _load_static()

    def _progress(self, mine: dict[str, str]) -> dict:
        return {"reviewed": sum(i in mine for i in self.pairs), "total": len(self.pairs)}

    def _pair(self, pair_id: str) -> ReviewPair:
        pair = self.pairs.get(pair_id)
        if pair is None:
            raise HTTPException(404, f"no pair {pair_id!r} under review")
        return pair

    def page(self) -> Response:
        return Response(self.static["index.html"], media_type="text/html; charset=utf-8")

    def static_file(self, name: str) -> Response:
        if name not in STATIC_FILES or name == "index.html":
            raise HTTPException(404, "not found")
        return Response(self.static[name], media_type=f"{STATIC_FILES[name]}; charset=utf-8")

    def info(self) -> dict:
        return {"total": len(self.pairs), "reviewer_default": self.reviewer_default, "decisions": DECISIONS}

    def list_pairs(self, reviewer: str = Query(...)) -> dict:
        reviewer = _reviewer(reviewer)
        mine = self.store.reviewer_decisions(reviewer)
        pairs = [{**p.to_dict(), "decision": mine.get(p.id)} for p in self.pairs.values()]
        return {"reviewer": reviewer, "pairs": pairs, "progress": self._progress(mine)}

    def decide(self, body: Decision) -> dict:
        reviewer, pair = _reviewer(body.reviewer), self._pair(body.pair_id)
        try:
            self.store.record(pair.id, reviewer, body.decision)
        except ValueError as err:
            raise HTTPException(400, str(err)) from err
        mine = self.store.reviewer_decisions(reviewer)
        return {"pair_id": pair.id, "decision": body.decision, "progress": self._progress(mine)}

    def undo(self, body: Undo) -> dict:
        reviewer = _reviewer(body.reviewer)
        undone = self.store.undo(reviewer)
        return {"undone": undone, "progress": self._progress(self.store.reviewer_decisions(reviewer))}

    def combined(self) -> dict:
        return combined_decisions(self.store, self.pairs)

    def image(self, pair_id: str, side: str) -> FileResponse:
        pair = self._pair(pair_id)
        if side not in SIDES:
            raise HTTPException(404, f"no side {side!r}: use one of {', '.join(SIDES)}")
        path = pair.original if side == "original" else pair.degraded
        if not path.is_file():
            logger.error("pair %s: the manifest's %s file %s is missing", pair_id, side, path)
            raise HTTPException(404, f"pair {pair_id!r}: its {side} file listed in the manifest is missing")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})


def build_app(
    stage_dir: str | Path,
    db_path: str | Path,
    reviewer_default: str | None = None,
    on_shutdown: Callable[[], None] | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The review app over the filter stage ``stage_dir``, storing decisions in the SQLite file ``db_path``.

    ``on_shutdown`` runs when the server stops (uvicorn ends the process on SIGTERM right after the app's
    shutdown, so code after ``uvicorn.run`` is not reached). ``allowed_hosts``: the ``Host`` headers
    accepted (others get 400), which keeps web pages that rebind a DNS name to 127.0.0.1 from reading the
    images or voting; None accepts any.
    """
    if reviewer_default is not None:
        reviewer_default = check_reviewer(reviewer_default)
    pairs = review_pairs(stage_dir)
    server = _Handlers(pairs, ReviewStore(db_path), reviewer_default)
    logger.info("%d pairs to review from %s; decisions in %s", len(pairs), stage_dir, db_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if on_shutdown is not None:
            await run_in_threadpool(on_shutdown)

    app = FastAPI(title="qhawkeye review", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_api_route("/", server.page, methods=["GET"])
    app.add_api_route("/static/{name}", server.static_file, methods=["GET"])
    app.add_api_route("/api/info", server.info, methods=["GET"])
    app.add_api_route("/api/pairs", server.list_pairs, methods=["GET"])
    app.add_api_route("/api/decision", server.decide, methods=["POST"])
    app.add_api_route("/api/undo", server.undo, methods=["POST"])
    app.add_api_route("/api/combined", server.combined, methods=["GET"])
    app.add_api_route("/image/{pair_id:path}/{side}", server.image, methods=["GET"])
    return app
