"""Human review of the pairs the filter flagged: a decision store, a local web app, the stage's entry point.

:mod:`.pairs` picks the pairs to review from a filter-stage manifest; :mod:`.store` keeps the decisions
(SQLite) and combines reviewers; :mod:`.app` is the FastAPI app and its page (``static/``); :mod:`.main` is
`qhawkeye data review` (serve, export).
"""
