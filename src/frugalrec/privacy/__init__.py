"""Privacy: keyed pseudonyms for user ids, PII scrubbing, forget-user, differential privacy."""

from frugalrec.privacy.pseudonyms import Pseudonymiser, load_or_create_key

__all__ = ["Pseudonymiser", "load_or_create_key"]
