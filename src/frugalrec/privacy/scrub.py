"""PII scrubbing for free text: queries, chat turns and item texts.

Text is scrubbed before it reaches an encoder, an LLM, a cache or a log. Each detected span
is replaced by a typed placeholder (``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[URL]``,
``[ADDRESS]``, ``[SSN]``, ``[IBAN]``), so downstream models still see that *something* was
there without seeing what.

Detection is rule-based and deliberately conservative on numbers: card numbers must pass the
Luhn check and start with a card-network prefix, IBANs must pass mod-97, ISBN-13s are left
alone, and bare digit runs only count as phone numbers in a phone-like layout (``+CC``,
``(NNN) NNN-NNNN``, trunk prefix ``0``) or right after a word like "phone"/"call". Years,
prices, movie titles with numbers ("Se7en", "Apollo 13 (1995)") and ISBNs survive.

Known limits: free-form street addresses are only found in the ``<number> <Name> <Street|Road|
...>`` and ``P.O. Box <n>`` shapes (so a title that *is* such an address is scrubbed too);
names, dates of birth and identifiers in other layouts are not detected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PLACEHOLDERS = {
    "url": "[URL]",
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ssn": "[SSN]",
    "phone": "[PHONE]",
    "address": "[ADDRESS]",
}


@dataclass(frozen=True)
class PiiSpan:
    """One detected piece of PII: ``text[start:end]`` is of ``kind`` (a key of PLACEHOLDERS)."""

    start: int
    end: int
    kind: str


# --- URLs carrying credentials or tokens ------------------------------------------------------

_URL_RE = re.compile(r"(?i)\b(?:https?|ftp|wss?)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+")
_URL_TRAIL = ".,;:!?)]}'\""
_USERINFO_RE = re.compile(r"^(?:[a-z]+://)?[^/?#@\s]+@", re.IGNORECASE)
_SENSITIVE_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "auth_token",
        "authorization",
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pass",
        "pwd",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "session",
        "sessionid",
        "session_id",
        "sid",
        "code",
        "otp",
        "jwt",
        "credential",
        "credentials",
        "email",
        "phone",
        "user",
        "userid",
        "user_id",
        "uid",
    }
)
_PARAM_RE = re.compile(r"[?&#;]([^=&#;?]+)=([^&#;]*)")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_OPAQUE_RE = re.compile(r"[A-Za-z0-9_\-]{32,}")


def _url_is_sensitive(url: str) -> bool:
    if _USERINFO_RE.match(url.split("://", 1)[-1] if "://" in url else url):
        return True
    for name, value in _PARAM_RE.findall(url):
        if name.strip().lower() in _SENSITIVE_PARAMS and value:
            return True
    if _JWT_RE.search(url):
        return True
    # A long opaque path segment mixing letters and digits is a capability token
    # (password-reset links, signed download links), not a slug.
    for seg in _OPAQUE_RE.findall(url):
        if any(c.isdigit() for c in seg) and any(c.isalpha() for c in seg):
            return True
    return False


def _url_spans(text: str) -> Iterable[PiiSpan]:
    for m in _URL_RE.finditer(text):
        url = m.group(0).rstrip(_URL_TRAIL)
        if url and _url_is_sensitive(url):
            yield PiiSpan(m.start(), m.start() + len(url), "url")


# --- e-mail -----------------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b"
)


def _email_spans(text: str) -> Iterable[PiiSpan]:
    for m in _EMAIL_RE.finditer(text):
        yield PiiSpan(m.start(), m.end(), "email")


# --- IBAN (mod-97) ----------------------------------------------------------------------------

_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def _iban_valid(raw: str) -> bool:
    s = raw.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


def _iban_spans(text: str) -> Iterable[PiiSpan]:
    for m in _IBAN_RE.finditer(text):
        if _iban_valid(m.group(0)):
            yield PiiSpan(m.start(), m.end(), "iban")


# --- payment cards (Luhn + network prefix) ----------------------------------------------------

_CARD_RE = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d-]|[.,]\d)")
# Groupings card numbers are printed in: unbroken, 4-4-4-4(-3), 4-6-5 (Amex), 4-6-4 (Diners).
_CARD_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 2)}
_CARD_GROUPS |= {(4, 4, 4, 3), (4, 4, 4, 5), (4, 4, 4, 6), (4, 4, 4, 7)}


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod-10) check used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _isbn13_valid(digits: str) -> bool:
    if len(digits) != 13 or not digits.startswith(("978", "979")):
        return False
    total = sum((1 if i % 2 == 0 else 3) * (ord(c) - 48) for i, c in enumerate(digits))
    return total % 10 == 0


def _card_prefix_ok(digits: str) -> bool:
    # Issuer ranges of the major networks (Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37,
    # Discover/UnionPay 6, JCB 35, Diners 30/36/38): lists of years (19xx/20xx) fall outside.
    first = digits[0]
    if first in "3456":
        return True
    return first == "2" and 2221 <= int(digits[:4]) <= 2720


def _card_spans(text: str) -> Iterable[PiiSpan]:
    for m in _CARD_RE.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"[ -]", "", raw)
        if not 13 <= len(digits) <= 19 or _isbn13_valid(digits):
            continue
        groups = tuple(len(g) for g in re.split(r"[ -]", raw))
        if len(groups) > 1 and groups not in _CARD_GROUPS:
            continue
        if _card_prefix_ok(digits) and luhn_valid(digits):
            yield PiiSpan(m.start(), m.end(), "card")


# --- US social security numbers ---------------------------------------------------------------

_SSN_RE = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")


def _ssn_spans(text: str) -> Iterable[PiiSpan]:
    for m in _SSN_RE.finditer(text):
        yield PiiSpan(m.start(), m.end(), "ssn")


# --- phone numbers ----------------------------------------------------------------------------

_PHONE_RES = (
    # International: +CC followed by digit groups.
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?![\d])"),
    # North American: (NNN) NNN-NNNN, NNN-NNN-NNNN, NNN.NNN.NNNN, NNN NNN NNNN.
    re.compile(r"(?<![\w.\-])(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?![\w]|[.\-]\d)"),
    # National numbers written with a trunk prefix 0: 020 7946 0958, 06 12 34 56 78.
    re.compile(r"(?<![\w.\-])0\d{1,4}(?:[ .\-]\d{2,4}){2,4}(?![\w]|[.\-]\d)"),
)
_PHONE_CONTEXT_RE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text)\b"
    r"(?:\s*(?:me|us|number|no\.?|nr\.?|#|at|on|:))*\s*[:#]?\s*"
    r"(?P<num>\+?\(?\d[\d ().\-]{5,20}\d)"
)


def _digit_count(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _phone_spans(text: str) -> Iterable[PiiSpan]:
    for rx in _PHONE_RES:
        for m in rx.finditer(text):
            if 8 <= _digit_count(m.group(0)) <= 15:
                yield PiiSpan(m.start(), m.end(), "phone")
    for m in _PHONE_CONTEXT_RE.finditer(text):
        num = m.group("num").rstrip(" .-(")
        if 7 <= _digit_count(num) <= 15:
            yield PiiSpan(m.start("num"), m.start("num") + len(num), "phone")


# --- street addresses (English layouts) -------------------------------------------------------

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|"
    r"Terrace|Way|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Crescent|Close|Alley)"
)
_ADDRESS_RE = re.compile(
    r"(?<![\w.])\d{1,5}[A-Za-z]?(?:-\d{1,5})?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?"
    r"(?:[A-Z][A-Za-z'\-]*\.?\s+){1,4}" + _STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*#?[A-Za-z0-9\-]+)?"
)
_PO_BOX_RE = re.compile(r"(?i)\bP\.?\s?O\.?\s*Box\s+\d+")


def _address_spans(text: str) -> Iterable[PiiSpan]:
    for rx in (_ADDRESS_RE, _PO_BOX_RE):
        for m in rx.finditer(text):
            yield PiiSpan(m.start(), m.end(), "address")


# Order is priority when spans overlap: a URL with a token beats the e-mail inside it, an IBAN
# or card beats the phone pattern its digit groups also match.
_DETECTORS = (
    _url_spans,
    _email_spans,
    _iban_spans,
    _card_spans,
    _ssn_spans,
    _phone_spans,
    _address_spans,
)


def _maybe_pii(text: str) -> bool:
    # Every detector needs a digit, an '@' or a URL; most item texts and queries have none.
    return "@" in text or "://" in text or "www." in text or any(c.isdigit() for c in text)


def find_pii(text: str) -> list[PiiSpan]:
    """Non-overlapping PII spans in ``text``, sorted by start offset."""
    if not isinstance(text, str):
        raise TypeError(f"find_pii expects str, got {type(text).__name__}")
    if not _maybe_pii(text):
        return []
    taken: list[PiiSpan] = []
    for detect in _DETECTORS:
        for span in detect(text):
            if all(span.end <= t.start or span.start >= t.end for t in taken):
                taken.append(span)
    return sorted(taken, key=lambda s: s.start)


def scrub_text(text: str) -> str:
    """``text`` with every detected PII span replaced by its typed placeholder."""
    spans = find_pii(text)
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(PLACEHOLDERS[s.kind])
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def scrub_texts(texts: Iterable[str]) -> list[str]:
    """Batch form of :func:`scrub_text`, same order."""
    return [scrub_text(t) for t in texts]


def contains_pii(text: str) -> bool:
    """True when :func:`find_pii` finds anything."""
    return bool(find_pii(text))
