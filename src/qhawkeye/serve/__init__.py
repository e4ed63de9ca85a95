"""`qhawkeye serve`: an HTTP server over one loaded :class:`~qhawkeye.scoring.Scorer`.

- :mod:`qhawkeye.serve.main`: :class:`~qhawkeye.serve.main.ServeConfig` (every knob, typed, with help), the
  command-line flags built from it, and ``main(config)``, which loads the model once and runs uvicorn.
- :mod:`qhawkeye.serve.app`: ``build_app(scorer, config)``, the FastAPI app (OpenAI-compatible
  ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/score``, ``GET /health``): schemas and routes.
- :mod:`qhawkeye.serve.worker`: the batching worker: one thread owns the model and answers queued requests
  in batches.
- :mod:`qhawkeye.serve.images`: where request images may come from, and the byte and pixel limits.
- :mod:`qhawkeye.serve.errors`: ``ApiError``, every error in OpenAI's shape.

Needs the ``serve`` extra: ``pip install 'qhawkeye[serve]'``.
"""
