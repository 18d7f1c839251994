"""Keyed HMAC-SHA256 pseudonyms for external user ids.

Raw user ids must never reach storage, logs, caches or a model: every stage downstream of
ingestion sees only ``Pseudonymiser.pseudonym(raw_id)``. The key lives outside the data
directory (env var or a 0600 key file in the user config dir), so a leaked store file cannot
be re-identified by hashing guessed ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np

KEY_ENV = "FRUGALREC_PSEUDONYM_KEY"
KEY_FILE_ENV = "FRUGALREC_PSEUDONYM_KEY_FILE"
_KEY_BYTES = 32
# 16 bytes (128 bits) of the HMAC: collisions are negligible for any realistic user base
# and the ids stay short enough for indexes and URLs.
_DIGEST_BYTES = 16


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing, malformed or stored unsafely."""


def default_key_path() -> Path:
    """``$FRUGALREC_PSEUDONYM_KEY_FILE`` or ``<user config dir>/frugalrec/pseudonym.key``."""
    override = os.environ.get(KEY_FILE_ENV)
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("frugalrec")) / "pseudonym.key"


def _decode(text: str, source: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise PseudonymKeyError(f"{source}: not valid url-safe base64") from exc
    if len(key) < 16:
        raise PseudonymKeyError(f"{source}: key has {len(key)} bytes, need at least 16")
    return key


def load_or_create_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """The pseudonym key: ``$FRUGALREC_PSEUDONYM_KEY`` (base64), else the key file.

    A missing key file is created with 32 random bytes and mode 0600. An existing key file
    readable by group or others is refused rather than silently used.
    """
    env = os.environ.get(KEY_ENV)
    if env and path is None:
        return _decode(env, KEY_ENV)
    key_path = Path(path) if path is not None else default_key_path()
    if key_path.exists():
        mode = key_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PseudonymKeyError(
                f"{key_path}: key file mode is {oct(mode)}; run `chmod 600 {key_path}`"
            )
        return _decode(key_path.read_text(encoding="ascii"), str(key_path))
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(_KEY_BYTES)
    # O_EXCL: two processes starting together must not each write a different key.
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(key_path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.urlsafe_b64encode(key).decode("ascii") + "\n")
    return key


class Pseudonymiser:
    """Maps raw external user ids to stable keyed pseudonyms (``u_`` + 32 hex chars).

    Deterministic for one key, so events arriving later join the same user; one-way without
    the key. ``pseudonym`` is idempotent: an id that already is a pseudonym of this form is
    hashed again, so callers must pseudonymise exactly once, at ingestion.
    """

    prefix = "u_"

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise PseudonymKeyError(f"key has {len(key)} bytes, need at least 16")
        self._key = bytes(key)

    @classmethod
    def from_environment(cls, path: str | os.PathLike[str] | None = None) -> Pseudonymiser:
        """Pseudonymiser with the key from :func:`load_or_create_key`."""
        return cls(load_or_create_key(path))

    def pseudonym(self, raw_id: object) -> str:
        """Pseudonym of one raw id (any value; compared by its ``str``)."""
        mac = hmac.new(self._key, str(raw_id).encode("utf-8"), hashlib.sha256)
        return self.prefix + mac.digest()[:_DIGEST_BYTES].hex()

    def pseudonyms(self, raw_ids: object) -> np.ndarray:
        """Pseudonyms of a 1-d array-like of raw ids, as an object array in the same order."""
        ids = np.asarray(raw_ids, dtype=object).ravel()
        return np.array([self.pseudonym(v) for v in ids], dtype=object)

    def __repr__(self) -> str:  # never print the key
        return "Pseudonymiser(key=<hidden>)"
