"""Full-ranking evaluation: metrics with bootstrap intervals, tuning on valid."""

from frugalrec.evaluate.metrics import per_user_metrics
from frugalrec.evaluate.protocol import EvalResult, evaluate_lists, evaluate_model, tune

__all__ = ["EvalResult", "evaluate_lists", "evaluate_model", "per_user_metrics", "tune"]
