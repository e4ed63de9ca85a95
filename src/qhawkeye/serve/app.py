"""The HTTP app over one loaded Scorer: request schemas, routes and ``build_app``.

Endpoints (every one but ``/health`` requires ``Authorization: Bearer KEY`` when an API key is set):

- ``POST /v1/chat/completions``: OpenAI's chat completions, non-streaming, ``n`` = 1. Images come as
  ``image_url`` parts holding a ``data:image/...;base64,`` URL, or a local path / ``file://`` URL under the
  configured image root. ``temperature`` 0 or absent decodes greedily (deterministic); above 0 samples with
  the request's ``seed``, or the server's seed when it gives none (so identical requests get identical
  answers). ``max_completion_tokens`` (or ``max_tokens``) above the server's limit is capped to it; absent,
  the limit is used. ``top_k`` is accepted as an extension. Each choice carries one non-standard field,
  ``"qhawkeye": {"score", "parsed", "clipped", "error"}``: the answer read by the prompt preset's parser.
- ``POST /v1/score``: ``{"images": [{"id"?, "data": base64 | "url": data URL | "path": under root}]}`` ->
  ``Scorer.describe()`` plus ``results`` (``ScoreResult.to_dict()``, in order). Bytes that are not an image
  (or a missing file under the root) are a per-image ``"unreadable"`` result; invalid base64, a path outside
  the root, or a size limit fails the whole request.
- ``GET /v1/models``, ``GET /health`` (status, model, queue depth, batch counters).

Roles ``system``, ``developer`` (treated as ``system``), ``user`` and ``assistant`` are kept; ``top_p``,
``top_k`` and ``seed`` apply only when ``temperature`` > 0.

Errors are :class:`~qhawkeye.serve.errors.ApiError`, in OpenAI's shape ``{"error": {"message", "type",
"code"}}``: 400 malformed JSON, a schema error, an unsupported parameter (``stream``, ``n`` > 1, ``stop``,
tools, ...), invalid base64, too many images, an image that does not decode (chat), an invalid path; 401
missing or wrong key; 403 a local path outside the image root (or no root); 404 another model id; 413 a body,
image or pixel count over its limit; 500 the model call failed; 503 the queue is full or the server is
stopping.

Images are read by :mod:`qhawkeye.serve.images` (sources and limits); the model is called only by the
batching worker in :mod:`qhawkeye.serve.worker`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from qhawkeye.images import UnreadableImage
from qhawkeye.scoring.generation import GenerationRequest
from qhawkeye.scoring.scorer import ScoreResult
from qhawkeye.serve.errors import ApiError
from qhawkeye.serve.images import ImageLoader
from qhawkeye.serve.worker import BatchWorker, Job, QueueFull, ShuttingDown

if TYPE_CHECKING:
    from qhawkeye.scoring.scorer import Scorer
    from qhawkeye.serve.main import ServeConfig

UNSUPPORTED_CHAT_FIELDS = (
    "stop, tools, tool_choice, functions, function_call, response_format, logprobs, top_logprobs, "
    "logit_bias, presence_penalty, frequency_penalty, stream_options, audio, modalities, prediction"
).split(", ")


# ---------------------------------------------------------------------------------------------- schemas


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields we can ignore (user, store, ...)

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    n: int | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool | None = None


class ScoreImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    data: str | None = None
    url: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.data, self.url, self.path)) != 1:
            raise ValueError("give exactly one of data (base64), url (data URL) or path")
        return self


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[ScoreImage] = Field(min_length=1)


def _validation_message(err: ValidationError | RequestValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()[:5]]
    return "invalid request: " + "; ".join(parts)


# ---------------------------------------------------------------------------------------------- app


def build_app(scorer: Scorer, config: ServeConfig) -> FastAPI:
    """The FastAPI app serving ``scorer``; its lifespan starts and stops the batching worker."""
    worker = BatchWorker(scorer, config.max_batch_size, config.batch_wait_ms / 1000, config.max_queue)
    server = _Handlers(scorer, config, worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        yield
        await run_in_threadpool(worker.stop, config.shutdown_timeout_s)

    app = FastAPI(title="qhawkeye", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if config.is_loopback:  # DNS rebinding: a page elsewhere must not reach a loopback server by another name
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"])
    _add_error_handlers(app)
    auth = [Depends(server.check_key)]
    app.add_api_route("/health", server.health, methods=["GET"])
    app.add_api_route("/v1/models", server.models, methods=["GET"], dependencies=auth)
    app.add_api_route("/v1/chat/completions", server.chat, methods=["POST"], dependencies=auth)
    app.add_api_route("/v1/score", server.score, methods=["POST"], dependencies=auth)
    app.state.worker = worker
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's (unknown route, wrong method), in OpenAI's shape."""

    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return err.response()

    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return ApiError(err.status_code, str(err.detail), "http_error").response()

    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return ApiError(400, _validation_message(err), "invalid_request").response()

    async def unexpected_error(
        _: Request, err: Exception
    ) -> JSONResponse:  # uvicorn still logs the traceback
        return ApiError(500, f"internal error: {type(err).__name__}: {err}", "internal_error").response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


class _Handlers:
    """The route handlers, sharing the scorer, the config, the image loader and the worker."""

    def __init__(self, scorer: Scorer, config: ServeConfig, worker: BatchWorker):
        self.scorer, self.config, self.worker = scorer, config, worker
        self.images = ImageLoader(config)
        self.model_id = config.served_model_name or Path(scorer.model_path).name
        self.created = int(time.time())

    async def check_key(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), self.config.api_key.encode()
        ):
            message = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"
            raise ApiError(401, message, "invalid_api_key", {"WWW-Authenticate": "Bearer"})

    async def health(self) -> JSONResponse:
        w = self.worker
        body = {
            "status": "ok" if w.alive else "stopped",
            "model": self.model_id,
            "queue_depth": w.depth,
            "batches_run": w.batches_run,
            "rows_run": w.rows_run,
            "batches_failed": w.batches_failed,
        }
        return JSONResponse(body, status_code=200 if w.alive else 503)

    async def models(self) -> dict:
        entry = {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "qhawkeye"}
        return {"object": "list", "data": [entry]}

    async def chat(self, request: Request) -> dict:
        body = self._parse(ChatRequest, await self._json(request))
        self._check_chat(body)
        generation = await self._submit("chat", await run_in_threadpool(self._chat_request, body), 1)
        parsed = self.scorer.preset.parser(generation.text)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": generation.text},
            "finish_reason": generation.finish_reason,
            "logprobs": None,
            "qhawkeye": {
                "score": parsed.score,
                "parsed": parsed.ok,
                "clipped": parsed.clipped,
                "error": parsed.error,
            },
        }
        usage = {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
        }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [choice],
            "usage": usage,
        }

    async def score(self, request: Request) -> dict:
        body = self._parse(ScoreRequest, await self._json(request))
        self._check_image_count(len(body.images))
        loaded = await run_in_threadpool(self._load_score_images, body.images)
        good = [(key, img) for key, img in loaded if isinstance(img, Image.Image)]
        scored = iter(await self._submit("score", good, len(good) * self.scorer.config.draws) if good else [])
        results = [next(scored) if isinstance(img, Image.Image) else img for _, img in loaded]
        return {**self.scorer.describe(), "model": self.model_id, "results": [r.to_dict() for r in results]}

    async def _json(self, request: Request) -> Any:
        """The body as JSON, read no further than ``max_body_bytes``."""
        limit = self.config.max_body_bytes
        too_big = ApiError(413, f"request body is over the server's limit of {limit} bytes", "body_too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        try:
            return json.loads(body)
        except ValueError as err:
            raise ApiError(400, f"request body is not valid JSON: {err}", "invalid_json") from None

    @staticmethod
    def _parse(model: type[BaseModel], data: Any):
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise ApiError(400, _validation_message(err), "invalid_request") from None

    def _check_chat(self, body: ChatRequest) -> None:
        if body.stream:
            raise ApiError(
                400, "streaming is not supported: leave stream out or set it to false", "stream_not_supported"
            )
        if body.n not in (None, 1):
            raise ApiError(
                400, f"n={body.n} is not supported: this server returns one choice (n=1)", "n_not_supported"
            )
        if body.model not in (None, self.model_id):
            raise ApiError(
                404,
                f"model {body.model!r} is not served here; this server serves {self.model_id!r}",
                "model_not_found",
            )
        extras = [k for k, v in (body.model_extra or {}).items() if k in UNSUPPORTED_CHAT_FIELDS and v]
        if extras:
            raise ApiError(
                400,
                f"unsupported parameters: {', '.join(sorted(extras))}; leave them out",
                "unsupported_parameter",
            )
        parts = [p for m in body.messages if not isinstance(m.content, str) for p in m.content]
        n_images = sum(isinstance(p, ImagePart) for p in parts)
        self._check_image_count(n_images)
        if getattr(self.scorer, "is_student", False) and n_images != 1:
            raise ApiError(
                400,
                f"this server runs a student scorer, which answers with the score of exactly one image (no "
                f"reasoning, the text is ignored); the request holds {n_images}",
                "student_needs_one_image",
            )
        chars = sum(len(m.content) for m in body.messages if isinstance(m.content, str))
        chars += sum(len(p.text) for p in parts if isinstance(p, TextPart))
        if chars > self.config.max_prompt_chars:
            raise ApiError(
                413,
                f"the messages hold {chars} characters of text, over the server's limit of "
                f"{self.config.max_prompt_chars}; send a shorter prompt",
                "prompt_too_long",
            )

    def _check_image_count(self, count: int) -> None:
        if count > self.config.max_images_per_request:
            message = f"{count} images is over the server's limit of {self.config.max_images_per_request} per request"
            raise ApiError(400, message, "too_many_images")

    def _chat_request(self, body: ChatRequest) -> GenerationRequest:
        """Our message format (image parts become placeholders) and decoding settings for a chat request."""
        messages, images = [], []
        for m, message in enumerate(body.messages):
            parts = (
                [TextPart(type="text", text=message.content)]
                if isinstance(message.content, str)
                else message.content
            )
            content = []
            for p, part in enumerate(parts):
                if isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
                    continue
                content.append({"type": "image"})
                images.append(self._chat_image(part.image_url.url, f"messages[{m}].content[{p}]"))
            messages.append(
                {"role": "system" if message.role == "developer" else message.role, "content": content}
            )
        requested = body.max_completion_tokens or body.max_tokens or self.config.token_limit
        if not body.temperature:  # 0 or absent: greedy, and the sampling settings do not apply
            return GenerationRequest(messages, images, min(requested, self.config.token_limit))
        seed = body.seed if body.seed is not None else self.scorer.config.seed
        top_p = body.top_p if body.top_p is not None else 1.0
        return GenerationRequest(
            messages,
            images,
            min(requested, self.config.token_limit),
            seed,
            body.temperature,
            top_p,
            body.top_k or 0,
        )

    def _chat_image(self, url: str, where: str) -> Image.Image:
        try:
            return self.images.from_url(url, where)
        except UnreadableImage as err:
            raise ApiError(400, f"image does not decode: {err}", "invalid_image") from None

    def _load_score_images(self, items: list[ScoreImage]) -> list[tuple[str, Image.Image | ScoreResult]]:
        out = []
        for n, item in enumerate(items):
            key = item.id if item.id is not None else (item.path or f"image-{n}")
            where = f"images[{n}]"
            try:
                if item.data is not None:
                    img = self.images.from_base64(item.data, where)
                elif item.url is not None:
                    img = self.images.from_url(item.url, where)
                else:
                    img = self.images.from_path(item.path, where)
            except UnreadableImage as err:
                img = ScoreResult.unreadable(key, str(err))
            out.append((key, img))
        return out

    async def _submit(self, kind: Literal["chat", "score"], payload: Any, rows: int) -> Any:
        """Queue one job for the worker and wait for its result."""
        try:
            future = self.worker.submit(Job(kind, payload, rows))
        except QueueFull as err:
            raise ApiError(
                503, f"the server is busy ({err}); retry shortly", "queue_full", {"Retry-After": "1"}
            ) from None
        except ShuttingDown as err:
            raise ApiError(503, str(err), "shutting_down") from None
        try:
            return await asyncio.wrap_future(future)
        except ShuttingDown as err:
            raise ApiError(503, str(err), "shutting_down") from None
        except Exception as err:
            raise ApiError(
                500, f"the model call failed: {type(err).__name__}: {err}", "generation_failed"
            ) from None
