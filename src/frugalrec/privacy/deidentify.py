"""De-identification of user side tables: direct identifiers dropped, quasi-identifiers coarsened.

Quasi-identifiers (exact age, full zip code) re-identify people when joined with other data
(Sweeney: zip + birth date + sex single out ~87% of the US population). On load, ages become
bands and zip codes their first three digits, or either is dropped, by configuration; columns
that identify a person directly (name, e-mail, phone, address, ...) are always dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import pandas as pd

from frugalrec._config import JsonConfig

AGE_BINS = (0, 17, 24, 34, 44, 54, 64, 200)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
# Lower-cased column names that identify a person directly; never kept whatever the policy.
DIRECT_IDENTIFIERS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "full_name",
        "surname",
        "email",
        "e-mail",
        "mail",
        "phone",
        "phone_number",
        "mobile",
        "telephone",
        "address",
        "street",
        "street_address",
        "ip",
        "ip_address",
        "ssn",
        "passport",
        "birth_date",
        "birthdate",
        "date_of_birth",
        "dob",
        "username",
        "login",
    }
)
AGE_COLUMNS = ("age",)
ZIP_COLUMNS = ("zip", "zip_code", "zipcode", "postcode", "postal_code")


@dataclasses.dataclass(frozen=True)
class QuasiIdentifierPolicy(JsonConfig):
    """What happens to quasi-identifying user columns on load.

    ``age``: "band" (default, the ml-100k bands) or "drop"; ``zip``: "zip3" (default, first
    three characters) or "drop"; ``drop``: further column names to drop (e.g. "gender").
    """

    age: Literal["band", "drop"] = "band"
    zip: Literal["zip3", "drop"] = "zip3"
    drop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.age not in ("band", "drop"):
            raise ValueError(f"age: expected 'band' or 'drop', got {self.age!r}")
        if self.zip not in ("zip3", "drop"):
            raise ValueError(f"zip: expected 'zip3' or 'drop', got {self.zip!r}")
        object.__setattr__(self, "drop", tuple(self.drop))


def age_bands(age: pd.Series) -> pd.Series:
    """Ages (any dtype; unparsable -> "nan") as the band labels of :data:`AGE_LABELS`."""
    return pd.cut(
        pd.to_numeric(age, errors="coerce"), bins=list(AGE_BINS), labels=list(AGE_LABELS)
    ).astype(str)


def coarsen_users(users: pd.DataFrame, policy: QuasiIdentifierPolicy | None = None) -> pd.DataFrame:
    """A copy of the user table with direct identifiers dropped and quasi-identifiers
    coarsened per ``policy``: ``age`` -> ``age_band``, ``zip`` -> ``zip3`` (or dropped).

    The ``user`` column (the id, pseudonymised elsewhere) is kept as it is.
    """
    policy = policy or QuasiIdentifierPolicy()
    out = users.copy()
    lower = {str(c).lower(): c for c in out.columns}
    extra = {d.lower() for d in policy.drop}
    gone = [
        c for lc, c in lower.items() if lc != "user" and (lc in DIRECT_IDENTIFIERS or lc in extra)
    ]
    out = out.drop(columns=gone)
    for lc in AGE_COLUMNS:
        if lc in lower and lower[lc] in out:
            col = lower[lc]
            if policy.age == "band":
                out["age_band"] = age_bands(out[col])
            out = out.drop(columns=[col])
    for lc in ZIP_COLUMNS:
        if lc in lower and lower[lc] in out:
            col = lower[lc]
            if policy.zip == "zip3":
                out["zip3"] = out[col].astype(str).str.strip().str[:3]
            out = out.drop(columns=[col])
    return out
