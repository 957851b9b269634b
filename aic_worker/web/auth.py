"""Who may write: reads are open (the server binds to loopback unless told otherwise), every
write needs `Authorization: Bearer <AIC_API_TOKEN>`.

Without a token configured, writes are disabled (403) rather than open: a dashboard started
without thinking about it must not let any local process delete or re-queue work. Tokens are
compared with hmac.compare_digest, so the time taken says nothing about how much matched.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

TOKEN_VARIABLE = "AIC_API_TOKEN"
BEARER = "bearer "


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
