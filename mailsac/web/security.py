"""Response headers, the server-side key sessions and CSRF checks of the web viewer.

A key typed into the viewer's form is kept in this process's memory only, under an opaque
random session id; the browser holds just that id, in an ``HttpOnly``, ``SameSite=Strict``
cookie. Each session has its own random CSRF token, which every state-changing form
carries and :func:`csrf_ok` checks. Sessions end when the key is forgotten, after
``MAILSAC_WEB_SESSION_IDLE`` seconds unused, or when the process restarts. The table is
capped per client IP and in total and refuses new sessions when full, never evicting
someone else's.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from mailsac.api.limits import HttpLimits

COOKIE = "mailsac_viewer"

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


class SessionRefused(Exception):  # noqa: N818 (a refusal shown as a page, not a fault)
    """No new key session now: the client IP holds its share, or the table is full."""


class SessionTable:
    """Opaque session id -> :class:`KeySession`, capped per client IP and in total.

    When full it refuses new sessions (:class:`SessionRefused`) instead of evicting other
    people's, and sessions unused for ``web_session_idle`` seconds expire. The entries are
    kept in least-recently-used order, so expiring is popping from the front (amortised
    O(1) per call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: OrderedDict[str, KeySession] = OrderedDict()
        self._owner: dict[str, str] = {}  # session id -> client IP that created it
        self._per_ip: Counter[str] = Counter()
        self.idle_ttl = HttpLimits().web_session_idle

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions_of(self, ip: str) -> int:
        return self._per_ip[ip]

    def create(self, key: str, ip: str, limits: HttpLimits) -> str:
        """Store ``key`` under a new random id (returned) with a new CSRF token."""
        self.idle_ttl = limits.web_session_idle
        self._expire()
        if self._per_ip[ip] >= limits.web_sessions_per_ip:
            raise SessionRefused(
                f"Your address already has {limits.web_sessions_per_ip} signed-in viewer "
                "sessions. Sign out of one (or wait until an unused one expires) and try "
                "again.")
        if len(self._sessions) >= limits.web_sessions:
            raise SessionRefused("The viewer has as many signed-in sessions as it can hold. "
                                 "Try again later.")
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = KeySession(key, secrets.token_urlsafe(32), self._clock())
        self._owner[sid] = ip
        self._per_ip[ip] += 1
        return sid

    def get(self, sid: str | None) -> KeySession | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used > self.idle_ttl:
            self.drop(sid)
            return None
        session.last_used = now
        self._sessions.move_to_end(sid)
        return session

    def drop(self, sid: str | None) -> None:
        if not sid or self._sessions.pop(sid, None) is None:
            return
        ip = self._owner.pop(sid)
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    def _expire(self) -> None:
        cutoff = self._clock() - self.idle_ttl
        while self._sessions:
            sid, oldest = next(iter(self._sessions.items()))
            if oldest.last_used >= cutoff:
                return
            self.drop(sid)


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
