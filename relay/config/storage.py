"""The `storage:` URL: its password, wherever it is written, and the URL without it.

`postgresql://relay:p@ss/w0rd@db:5432/relay` is what an operator writes when the password
holds `@` or `/`. `urlsplit` ends the host at the first `/` and so finds the password
`p`, and asyncpg splits at the first `@`: the real password would be neither masked nor
used. Such a URL is a config error (`check_storage_url`) that says to percent-encode the
password, and never shows it. `Config.secrets()` (relay/config/model.py) and the banner
(`_safe_storage` in relay/cli.py) find the password with `storage_passwords`, which
returns every reading of it, so masking does not depend on the URL being well formed.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
SQLITE = "sqlite:///"
PATTERN = r"^(sqlite:///|postgres(ql)?://)"  # for the JSON Schema; the check is below
_MIN_MASKED = 6  # shorter readings would mask pieces of the host or database name
_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&#]*", re.IGNORECASE)
_POSTGRES = re.compile(r"^postgres(?:ql)?://")
_ENCODING = (
    "write @ as %40, / as %2F, ? as %3F, # as %23, % as %25 and a space as %20 (the URL is "
    "not shown: it holds the password)"
)


def check_storage_url(url: str) -> str:
    """`url` if the relay reads a postgresql:// URL the way its writer meant; ValueError
    (never quoting the URL) otherwise. sqlite:/// URLs hold no password and pass."""
    if url.startswith(SQLITE):
        return url
    if not _POSTGRES.match(url):
        raise ValueError(
            "storage is sqlite:///PATH (one instance) or postgresql://USER:PASSWORD@HOST:PORT/DB "
            "(several); the value is not shown: it may hold a password"
        )
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(
            "the storage URL holds a space or a control character, which must be "
            f"percent-encoded: {_ENCODING}"
        )
    rest = url.split("://", 1)[1]
    authority_end = _authority_end(rest)
    authority, after = rest[:authority_end], rest[authority_end:]
    path_end = min((at for at in (after.find("?"), after.find("#")) if at >= 0), default=None)
    query_or_fragment = after[path_end:] if path_end is not None else ""
    path = after[:path_end] if path_end is not None else after
    if (
        authority.count("@") > 1
        or "@" in path
        or "@" in query_or_fragment.partition("#")[2]
        or ("@" in query_or_fragment and "@" not in authority)
    ):
        raise ValueError(
            "the password in the storage URL (or its user name, or a query value) holds a "
            f"character that must be percent-encoded: {_ENCODING}"
        )
    try:
        urlsplit(url).port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ValueError(
            "the port in the storage URL is not a number (e.g. postgresql://user:PASSWORD@host"
            ":5432/db); if a password holds : / @, percent-encode it (the URL is not shown)"
        ) from None
    return url


def storage_passwords(url: str) -> list[str]:
    """Every string that may be the URL's password, as written and decoded, longest first:
    urlsplit's reading, the reading up to the last `@` (a password holding `@` or `/`), and
    `?password=` values. Over-inclusive on purpose: it is used to mask, not to connect."""
    if "://" not in url:
        return []
    rest = url.split("://", 1)[1]
    found: list[str] = []
    end = _userinfo_end(rest)
    if end >= 0:
        found.append(rest[:end].partition(":")[2])
    first_at = rest.find("@")  # asyncpg's reading: the user information ends at the first @
    if first_at >= 0:
        found.append(rest[:first_at].partition(":")[2])
    with contextlib.suppress(ValueError):  # a port that is not a number
        found.append(urlsplit(url).password or "")
    query = url.partition("?")[2]
    found += [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "password"]
    forms = {form for secret in found if secret for form in (secret, unquote(secret))}
    return sorted(forms, key=len, reverse=True)


def safe_storage_url(url: str) -> str:
    """The URL with its password (however written) replaced by ***, for banners and errors."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    end = _userinfo_end(rest)
    if end >= 0 and ":" in rest[:end]:
        user = rest[:end].partition(":")[0]
        rest = f"{user}:{MASK}{rest[end:]}"
    masked = _QUERY_PASSWORD.sub(MASK, f"{scheme}://{rest}")
    for password in storage_passwords(url):  # a reading the above missed
        if len(password) >= _MIN_MASKED:
            masked = masked.replace(password, MASK)
    return masked


def _authority_end(rest: str) -> int:
    """Where the host part ends in the URL after `scheme://`, as RFC 3986 (and urlsplit) read it."""
    return min((at for at in map(rest.find, "/?#") if at >= 0), default=len(rest))


def _userinfo_end(rest: str) -> int:
    """The index of the `@` that ends `user:password` in the URL after `scheme://`, or -1.

    A well-formed URL has it in the host part. Otherwise the password holds `/`, `?` or
    `#`, and it is the last `@`: the host and database come after the password."""
    authority_end = _authority_end(rest)
    in_authority = rest.rfind("@", 0, authority_end)
    path_end = min(
        (at for at in (rest.find("?", authority_end), rest.find("#", authority_end)) if at >= 0),
        default=len(rest),
    )
    if in_authority >= 0 and "@" not in rest[authority_end:path_end]:
        return in_authority
    return rest.rfind("@")
