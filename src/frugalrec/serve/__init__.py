"""HTTP service: FastAPI app, embedded store (SQLite) or PostgreSQL, real-time feedback loop.

Entry points: :func:`frugalrec.serve.app.create_app` with a
:class:`frugalrec.serve.settings.ServeSettings`; stores via
:func:`frugalrec.serve.store.open_store`.
"""
