"""The dispatcher's HTTP API (FastAPI): one router per feature, wired in ``app.py``."""
