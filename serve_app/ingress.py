"""The one ingress shell of the REST and live deployments.

Both are FastAPI apps built here, so they cannot drift: the same error
handlers (``camcount.http.errors``: one error body, ``Retry-After`` on a
503 or a limit, a 422 naming a bad parameter, a 500 with a reference), the
same CORS policy, the same token check and rate limit (``Guard``), the
same body limit. A deployment adds its routes and the state its routes
read (``app.state``), nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from camcount.config import ApiConfig
from camcount.http.errors import exception_handlers
from camcount.http.limits import RateLimiter
from serve_app.auth import Guard, TokenCheck

#: The largest request body either app reads (a camera with its lines and zones).
MAX_BODY_BYTES = 1 << 20


def edge_app(
    *,
    settings: ApiConfig,
    check: TokenCheck,
    limiter: RateLimiter,
    app_name: str,
    public: Callable[[str], bool],
    query_allowed: Callable[[str], bool],
    allow_methods: Sequence[str] = ("GET",),
    allow_headers: Sequence[str] = ("Authorization",),
    openapi_url: str | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
) -> FastAPI:
    """An app with the shared handlers and middleware and no routes yet.

    ``public`` names the paths open without a token, ``query_allowed`` the
    ones that may take it as ``access_token`` (where a browser API cannot
    set a header). FastAPI's own documentation pages are off: they load
    their scripts from the internet (the REST app serves its own ``/docs``).
    """
    return FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=openapi_url,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=list(allow_methods),
                allow_headers=list(allow_headers),
            ),
            Middleware(
                Guard,
                check=check,
                limiter=limiter,
                public=public,
                query_allowed=query_allowed,
                app_name=app_name,
            ),
        ],
        max_body_size=MAX_BODY_BYTES,
    )
