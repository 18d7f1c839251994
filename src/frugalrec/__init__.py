"""frugalrec: language-model recommendations that know what they cost."""

from frugalrec._threads import set_thread_env

# Must run before numpy is imported anywhere so that BLAS picks it up.
set_thread_env()

__version__ = "0.1.0"
__all__ = ["ColumnMap", "DataSource", "Recommender", "__version__", "load_dataset"]

# The facade and the loaders are imported on first use: ``import frugalrec`` stays cheap
# (no pandas, no models) for the CLI and the thread set-up above.
_LAZY = {
    "Recommender": ("frugalrec.api", "Recommender"),
    "ColumnMap": ("frugalrec.data.columns", "ColumnMap"),
    "DataSource": ("frugalrec.data.sources", "DataSource"),
    "load_dataset": ("frugalrec.data.sources", "load_dataset"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'frugalrec' has no attribute {name!r}")
