"""Headers on every response, so that nothing served can act as a page of the dashboard.

The token sits in the dashboard's sessionStorage: a script running on its origin could
read it. So every response says `nosniff` (a browser never guesses HTML out of an image or
a JSON body), may not be framed (clickjacking), sends no Referer, and the pages carry a
Content-Security-Policy that allows only the package's own script and style files (no
inline script, nothing from elsewhere). Originals and previews are files from the archive,
not pages: they get `Content-Security-Policy: sandbox`, so even opened directly they run no
script and have no origin.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
)
FILE_POLICY = "sandbox"
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware: ALWAYS on every response, and PAGE_POLICY where a route set no policy
    of its own (the archive's files set FILE_POLICY)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = PAGE_POLICY
            await send(message)

        await self.app(scope, receive, with_headers)
