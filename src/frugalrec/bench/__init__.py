"""The instruments: commands and functions that measure configurations, encoders, LLMs,
engines and the service under load. They sit on top (beside ``serve`` and ``cli``) and feed
the cost model in :mod:`frugalrec.cost`, which never imports them back."""
