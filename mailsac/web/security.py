"""Response headers, the server-side key sessions and CSRF checks of the web viewer.

A key typed into the viewer's form is kept in this process's memory only, under an opaque
random session id; the browser holds just that id, in an ``HttpOnly``, ``SameSite=Strict``
cookie. Each session has its own random CSRF token, which every state-changing form
carries and :func:`csrf_ok` checks. Sessions end when the key is forgotten, after
:data:`IDLE_TTL` seconds unused, or when the process restarts.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "mailsac_viewer"
IDLE_TTL = 12 * 3600.0
MAX_SESSIONS = 10_000

# Every page of the viewer: nothing but this origin, no inline script or style.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# Mail HTML inside the viewer's iframe: an opaque origin without scripts. Popups are
# allowed so that the (sanitized, rel=noopener) links of a mail can open in a new tab.
MAIL_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
_BODY_CSP = (
    "sandbox " + MAIL_SANDBOX + "; default-src 'none'; img-src {images}; "
    "style-src 'unsafe-inline'; frame-ancestors 'self'"
)
BODY_CSP = _BODY_CSP.format(images="data:")
BODY_CSP_REMOTE_IMAGES = _BODY_CSP.format(images="data: http: https:")
# Raw source and attachments: never a document of our origin, even if a browser renders it.
DOWNLOAD_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"


def page_headers() -> dict[str, str]:
    """Headers of every HTML page (the app-wide middleware adds nosniff/no-referrer)."""
    return {
        "Content-Security-Policy": PAGE_CSP,
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
    }


def body_headers(remote_images: bool) -> dict[str, str]:
    """Headers of the mail body shown inside the viewer's own (same-origin) iframe."""
    return {
        "Content-Security-Policy": BODY_CSP_REMOTE_IMAGES if remote_images else BODY_CSP,
        "Cache-Control": "no-store",
        "X-Frame-Options": "SAMEORIGIN",
    }


@dataclass
class KeySession:
    """One browser's key, with the CSRF token its destructive forms must carry."""

    key: str
    csrf: str
    last_used: float


class KeySessions:
    """Opaque session id -> :class:`KeySession`, bounded and idle-expiring (in memory)."""

    def __init__(self, *, idle_ttl: float = IDLE_TTL, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_ttl = idle_ttl
        self._max = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, KeySession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, key: str) -> str:
        """Store ``key`` under a new random id (returned) with a new CSRF token."""
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)  # the least recently used
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = KeySession(key, secrets.token_urlsafe(32), self._clock())
        return session_id

    def get(self, session_id: str | None) -> KeySession | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used > self._idle_ttl:
            del self._sessions[session_id]
            return None
        session.last_used = now
        self._sessions.move_to_end(session_id)
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)


def session_id(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(COOKIE, value, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def csrf_ok(session: KeySession | None, token: str | None) -> bool:
    """True only for a session whose token equals ``token`` (constant-time compare)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def same_origin(request: Request) -> bool:
    """False when a browser says the request comes from another site or an opaque origin
    (such as a sandboxed frame). ``Sec-Fetch-Site`` decides when sent; otherwise
    ``Origin`` must be ours (browsers send ``Origin: null`` under ``no-referrer``, which
    is why fetch metadata comes first). Non-browser clients send neither and pass."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path of this site (never another origin), else ``default``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 for c in value):
        return default
    return value
