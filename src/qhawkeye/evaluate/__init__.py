"""Evaluation: correlation metrics (:mod:`.metrics`), benchmark cards and their label files
(:mod:`.benchmarks`), and the renderer of results into tables and plots (:mod:`.report`)."""
