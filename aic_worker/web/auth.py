"""Who may write, and by which name the server may be reached.

Reads are open (the server binds to loopback unless told otherwise); every write needs
`Authorization: Bearer <AIC_API_TOKEN>`. Without a token configured, writes are disabled
(403) rather than open: a dashboard started without thinking about it must not let any local
process re-queue or add work. Tokens are compared with hmac.compare_digest, so the time taken
says nothing about how much matched. A header, not a cookie: another site's page can't make
the browser send it (no cross-site request forgery).

Open reads on loopback invite DNS rebinding: a web page whose name is made to resolve to
127.0.0.1 could read the catalog and the images as if it were the dashboard. So a request
must name the server by a loopback name, its bound address or a name in AIC_ALLOWED_HOSTS
(HostCheck), as a reverse proxy or Ingress would; /healthz answers probes by any name.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import HTTPException, Request, status
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_VARIABLE = "AIC_API_TOKEN"
HOSTS_VARIABLE = "AIC_ALLOWED_HOSTS"
BEARER = "bearer "
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_HOST = "*"
UNCHECKED_PATHS = ("/healthz",)


def require_token(request: Request) -> None:
    """A FastAPI dependency for every write route: 403 when writes are off, 401 without the token."""
    expected: str | None = request.app.state.settings.token
    if not expected:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"writes are disabled: start the server with {TOKEN_VARIABLE} set to enable them",
        )
    given = request.headers.get("authorization", "")
    token = given[len(BEARER) :] if given.lower().startswith(BEARER) else ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"this write needs the header `Authorization: Bearer ${TOKEN_VARIABLE}`",
            headers={"WWW-Authenticate": "Bearer"},
        )


def host_name(header: str) -> str:
    """`example.org:8470` -> `example.org`, `[::1]:8470` -> `::1` (lower case)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(configured: str | None, bound: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the addresses bound (wildcards aside) and AIC_ALLOWED_HOSTS (comma
    separated; `*` allows any name)."""
    extra = {name.strip().lower() for name in (configured or "").split(",") if name.strip()}
    return LOOPBACK_NAMES | {host_name(b) for b in bound if b not in ("0.0.0.0", "::", "")} | extra


class HostCheck:
    """ASGI middleware: 421 for a request whose Host header names the server by another name."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ANY_HOST not in self.hosts and scope["path"] not in UNCHECKED_PATHS:
            name = host_name(Headers(scope=scope).get("host", ""))
            if name not in self.hosts:
                refusal = PlainTextResponse(
                    f"this server does not answer to {name!r}; add it to {HOSTS_VARIABLE}", status_code=421
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
