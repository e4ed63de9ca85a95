"""`qhawkeye serve`: its typed configuration, its command-line flags, and the entry point that runs uvicorn.

Every flag comes from a :class:`ServeConfig` or :class:`~qhawkeye.scoring.config.ScorerConfig` field
(``max_batch_size`` -> ``--max-batch-size``), with the field's help text, so the dataclasses are the one list
of knobs::

    qhawkeye serve --model runs/tiny --port 8000 --image-root data/images
    python -m qhawkeye.serve.main --model tiny-format --max-new-tokens 64      # the same, without the CLI

The API key is read from ``--api-key`` or, when that is absent, from ``$QHAWKEYE_API_KEY`` (prefer the
environment: command lines are visible to other users of the machine).

Importing this module stays light (no torch, transformers or FastAPI): the model and the app are imported
inside :func:`main`, so the CLI can build its flags cheaply.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from qhawkeye.cli_args import add_dataclass_arguments
from qhawkeye.scoring.config import ScorerConfig

logger = logging.getLogger(__name__)

API_KEY_ENV = "QHAWKEYE_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    """Everything `qhawkeye serve` can be told, apart from the model's own settings in ``scorer``."""

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address to bind; 0.0.0.0 exposes the server to the network (then set an api_key)"},
    )
    port: int = field(default=8000, metadata={"help": "TCP port to listen on"})
    allow_unauthenticated_network: bool = field(
        default=False,
        metadata={
            "help": "serve on a non-loopback address without an api_key (anyone who can reach the address "
            "can use the model); without this flag that is refused"
        },
    )
    max_prompt_chars: int = field(
        default=32_000,
        metadata={"help": "largest amount of text a chat request's messages may hold (413 above)"},
    )
    api_key: str | None = field(
        default=None,
        metadata={
            "help": "require 'Authorization: Bearer KEY' on every endpoint except /health "
            f"(CLI: ${API_KEY_ENV} when the flag is absent)"
        },
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "help": "folder that local image paths and file:// URLs must lie in (symlinks resolved); "
            "without it local paths are refused and images must be sent inline"
        },
    )
    served_model_name: str | None = field(
        default=None,
        metadata={"help": "model id in /v1/models and responses (default: the model folder's name)"},
    )
    max_body_bytes: int = field(
        default=32 * 2**20, metadata={"help": "largest request body in bytes; larger bodies get 413"}
    )
    max_image_bytes: int = field(
        default=16 * 2**20, metadata={"help": "largest encoded image in bytes; larger images get 413"}
    )
    max_image_pixels: int = field(
        default=4096 * 4096,
        metadata={
            "help": "largest image width x height, read from the header before decoding; larger get 413 "
            "(the processor's own --max-pixels then resizes what the model sees)"
        },
    )
    max_aspect_ratio: float = field(
        default=200.0,
        metadata={
            "help": "an image whose long side is more than this many times its short side is reported "
            "unreadable (per image in /v1/score, 400 in chat)"
        },
    )
    max_images_per_request: int = field(
        default=16, metadata={"help": "most images in one chat request or /v1/score request; more get 400"}
    )
    max_tokens: int | None = field(
        default=None,
        metadata={
            "help": "largest completion a chat request may ask for: a larger max_tokens is capped to it, and "
            "it is the length used when a request sets none (default: --max-new-tokens)"
        },
    )
    max_batch_size: int = field(
        default=16,
        metadata={
            "help": "most generation rows per model call (a chat request is one row, a /v1/score request "
            "images x draws)"
        },
    )
    batch_wait_ms: float = field(
        default=10.0,
        metadata={"help": "once a request is queued, how long the worker waits for others to fill the batch"},
    )
    max_queue: int = field(
        default=64, metadata={"help": "requests waiting for the model; a request beyond this gets 503"}
    )
    shutdown_timeout_s: float = field(
        default=30.0,
        metadata={"help": "on SIGINT/SIGTERM, how long in-flight requests may take to finish"},
    )
    scorer: ScorerConfig = field(
        default_factory=ScorerConfig,
        metadata={"help": "the model, its prompt preset and its decoding for /v1/score"},
    )

    def __post_init__(self):
        positive = ("max_body_bytes", "max_image_bytes", "max_image_pixels", "max_images_per_request",
                    "max_prompt_chars")  # fmt: skip
        for name in (*positive, "max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")
        if not self.max_aspect_ratio >= 1:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.batch_wait_ms < 0 or self.shutdown_timeout_s < 0:
            raise ValueError("batch_wait_ms and shutdown_timeout_s must be >= 0")
        if self.api_key == "":
            raise ValueError(f"api_key is empty: give a key, or unset ${API_KEY_ENV} to serve without one")
        if not self.is_loopback and self.api_key is None and not self.allow_unauthenticated_network:
            raise ValueError(
                f"host {self.host!r} is reachable from the network and no api_key is set: set one (--api-key or "
                f"${API_KEY_ENV}), bind 127.0.0.1, or pass --allow-unauthenticated-network to serve anyone"
            )
        if self.image_root is not None and not Path(self.image_root).expanduser().is_dir():
            raise ValueError(f"image_root {self.image_root!r} is not a folder: create it or leave it out")

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK

    @property
    def token_limit(self) -> int:
        """The largest chat completion, in tokens."""
        return self.max_tokens if self.max_tokens is not None else self.scorer.max_new_tokens

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`ServeConfig` and :class:`ScorerConfig` field (defaults stay the dataclasses')."""
    group = parser.add_argument_group("server")
    add_dataclass_arguments(group, ServeConfig, skip=("scorer",), suppress_defaults=True)
    group = parser.add_argument_group("model, and decoding for /v1/score")
    add_dataclass_arguments(
        group, ScorerConfig, skip=("max_image_pixels", "max_aspect_ratio"), suppress_defaults=True
    )  # the server's own image limits apply


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` for parsed flags; the API key falls back to ``$QHAWKEYE_API_KEY``."""
    given = vars(args)
    limits = ("max_image_pixels", "max_aspect_ratio")  # the server's, not the scorer's
    scorer = ScorerConfig(
        **{
            f.name: given[f.name]
            for f in dataclasses.fields(ScorerConfig)
            if f.name in given and f.name not in limits
        }
    )
    serve = {f.name: given[f.name] for f in dataclasses.fields(ServeConfig) if f.name in given}
    serve.setdefault("api_key", os.environ.get(API_KEY_ENV) or None)
    return ServeConfig(**serve, scorer=scorer)


def main(config: ServeConfig) -> None:
    """Load the model once, then serve it until SIGINT/SIGTERM."""
    try:
        import uvicorn

        from qhawkeye.serve.app import build_app
    except ImportError as err:
        raise ImportError(
            f"qhawkeye serve needs the serve extra: pip install 'qhawkeye[serve]' ({err})"
        ) from err
    from qhawkeye.scoring.scorer import load_scorer

    scorer = load_scorer(config.scorer)
    app = build_app(scorer, config)
    if config.host not in LOOPBACK and config.api_key is None:
        logger.warning("listening on %s without an API key: anyone who can reach it can use it", config.host)
    logger.info("serving %s at %s (OpenAI API under %s/v1)", scorer.model_path, config.url, config.url)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
        timeout_graceful_shutdown=config.shutdown_timeout_s,
    )


def cli_main(argv: list[str] | None = None) -> None:
    """``python -m qhawkeye.serve.main [flags]``: the same as ``qhawkeye serve [flags]``."""
    parser = argparse.ArgumentParser(prog="qhawkeye serve", description="serve a quality model over HTTP")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    main(config)


if __name__ == "__main__":
    cli_main()
