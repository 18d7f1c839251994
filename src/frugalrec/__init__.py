"""frugalrec: language-model recommendations that know what they cost."""

from frugalrec._threads import set_thread_env

# Must run before numpy is imported anywhere so that BLAS picks it up.
set_thread_env()

__version__ = "0.1.0"
__all__ = ["__version__"]
