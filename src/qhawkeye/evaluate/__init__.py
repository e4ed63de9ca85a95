"""Evaluation: correlation metrics (:mod:`.metrics`), benchmark cards and their label files
(:mod:`qhawkeye.labels`, re-exported as :mod:`.benchmarks`), and the renderer of results into tables and plots (:mod:`.report`)."""
