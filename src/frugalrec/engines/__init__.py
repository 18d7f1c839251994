"""Where batch stages run: in this process (``local``) or on a Ray cluster (``ray``)."""

from frugalrec.engines.base import ENGINES, Engine, make_engine

__all__ = ["ENGINES", "Engine", "make_engine"]
