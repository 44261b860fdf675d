"""Who may use the console: one middleware in front of every request.

- With `admin.token`, every API request needs `Authorization: Bearer <token>` (compared in
  constant time). The page shells and their static files carry no data and load without
  it: the page asks for the token and sends it with each API call (a browser cannot add
  the header to a plain navigation).
- Without a token the listener is on a loopback address, and the Host header must name a
  loopback host too: a web page whose name was rebound to 127.0.0.1 (DNS rebinding) then
  cannot read the console through the browser of someone on this machine.
- A changing request (anything but GET and HEAD) from another origin is refused: the
  browser's `Sec-Fetch-Site` must say same-origin (or none: typed, not sent by a page), and
  an `Origin` must be the console's own. Scripts send neither and are let through. Its
  body must be declared `application/json`: a form can post text/plain without either
  header, but not JSON (that needs a CORS preflight, which the console does not answer).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from relay.config.types import is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD"})
_SAME_SITE = frozenset({"same-origin", "none"})

# Sent with every answer: no framing (clickjacking a retry button), nothing from elsewhere,
# nothing cached (customers' messages), no Referer with filters in it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def refusal(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _netloc(text: str) -> str | None:
    """The host[:port] of a URL; None when it is none (an unclosed `[`: refused, not a 500)."""
    try:
        return urlsplit(text).netloc
    except ValueError:
        return None


def _host_is_loopback(request: web.Request) -> bool:
    try:
        host = urlsplit(f"//{request.host}").hostname or ""
    except ValueError:  # not a host name at all
        return False
    return is_loopback(host)


def cross_origin(request: web.Request) -> str | None:
    """Why a changing request looks sent by another site's page (None: it does not)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in _SAME_SITE:
        return f"Sec-Fetch-Site is {site}"
    origin = request.headers.get("Origin")
    netloc = _netloc(origin) if origin is not None else None
    if origin is not None and (netloc is None or netloc.lower() != request.host.lower()):
        return f"Origin {origin} is not this console"
    return None


def _bearer_matches(request: web.Request, token: bytes) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token)


def guard(token: str | None, open_paths: Callable[[str], bool]) -> web.middleware:  # type: ignore[valid-type]
    """The middleware; `open_paths(path)`: a page shell or a static file, readable without
    the token."""
    secret = token.encode() if token is not None else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await _checked(request, handler)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
        if secret is None and not _host_is_loopback(request):
            return refusal(
                403, "the console without a token answers only to localhost (set admin.token)"
            )
        if request.method not in SAFE_METHODS and (why := cross_origin(request)):
            return refusal(403, f"refused: a request from another origin ({why})")
        if request.method not in SAFE_METHODS and request.content_type != "application/json":
            # A form of another site posts text/plain (or form data) without a preflight,
            # sometimes without an Origin; JSON needs a preflight, which the console refuses.
            return refusal(415, "a changing request needs Content-Type: application/json")
        if (
            secret is not None
            and not open_paths(request.path)
            and not _bearer_matches(request, secret)
        ):
            return refusal(
                401,
                "this console needs its token: send Authorization: Bearer <admin.token>",
                **{"WWW-Authenticate": 'Bearer realm="relay console"'},
            )
        return await handler(request)

    return check
