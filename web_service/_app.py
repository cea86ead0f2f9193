"""The web service: server-rendered GOV.UK pages for coordinators, professionals
and IG officers.

Every page needs a signed-in session and a role that may see it; every form
post carries the session's CSRF token. The pages call the linkage service and
the audit log with the user's own bearer token (opened at sign-in) and relay
the professional's browser-signed requests to the unlock service, so this
process can do nothing its user could not. It never holds an identity: releases
pass through sealed and are opened by the browser with the professional's key.

Responses carry a strict Content-Security-Policy (scripts only from this
origin or with the page's nonce; WebAssembly for libsodium), no caching of
pages, no referrer and no framing.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, PackageLoader, PrefixLoader, select_autoescape
from sqlalchemy.engine import Engine

from service_common import NO_PUBLIC_DOCS, BodyLimit, instrument_app

from . import _store as store
from ._accounts import log_fields, sign_in
from ._backends import Backend
from ._config import Settings
from ._errors import BackendError, ConfigError, SignInError
from ._sessions import COOKIE, Session, SessionStore

__all__ = ["Forbidden", "SignInRequired", "create_app", "render"]

PACKAGE = Path(__file__).parent
STATIC = PACKAGE / "static"
VENDOR = STATIC / "vendor"
HOME = {"coordinator": "/families", "professional": "/requests", "ig_officer": "/audit"}
NAV = {
    "coordinator": [
        ("Families", "/families"),
        ("Review", "/review"),
        ("Claims", "/claims"),
        ("Reports", "/reports"),
        ("Charts", "/charts"),
    ],
    "professional": [
        ("Your requests", "/requests"),
        ("Ask for a family", "/requests/new"),
        ("Approvals", "/approvals"),
    ],
    "ig_officer": [
        ("Audit log", "/audit"),
        ("Checkpoints", "/audit/checkpoint"),
        ("Receipts", "/audit/receipt"),
        ("Anomalies", "/audit/anomalies"),
        ("Break-glass reviews", "/audit/reviews"),
        ("Subject access", "/audit/subject-access"),
    ],
}
ROLE_NAMES = {
    "coordinator": "Coordinator",
    "professional": "Professional",
    "ig_officer": "Information governance",
}
_logger = logging.getLogger(__name__)
# Paths of the unlock service a signed-in professional or IG officer's browser
# may call through the relay (the unlock service still checks each one).
RELAY_PATHS = re.compile(
    r"^/(unlocks(/req_[0-9a-f]{16,64}(/approvals|/release)?)?"
    r"|approvals|purposes|reviews(/req_[0-9a-f]{16,64})?|subject-access"
    r"|restrictions(/fam_[0-9a-f]{16,64}/lift)?"
    r"|professionals/pro_[0-9a-f]{16,64}/unlocks)(\?[A-Za-z0-9_=&.-]{0,200})?$"
)


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""


class Forbidden(Exception):
    """Signed in, but this role may not see the page."""


def templates() -> Environment:
    """Our templates, with GOV.UK Frontend's macros under ``govuk_frontend_jinja/``."""
    env = Environment(
        loader=ChoiceLoader(
            [
                PackageLoader("web_service", "templates"),
                PrefixLoader(
                    {"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja", "templates")}
                ),
            ]
        ),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from ._format import FILTERS

    env.filters.update(FILTERS)
    return env


def render(request: Request, name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    """The page ``name`` with the layout's context (user, navigation, CSRF, nonce)."""
    session: Session | None = getattr(request.state, "session", None)
    user = session.user if session else None
    flash = list(session.flash) if session else []
    if session:
        session.flash.clear()
    html = request.app.state.templates.get_template(name).render(
        request=request,
        user=user,
        role_name=ROLE_NAMES.get(user.role, "") if user else "",
        nav=NAV.get(user.role, []) if user else [],
        path=request.url.path,
        csrf=session.csrf if session else "",
        cspNonce=request.state.nonce,
        flash=flash,
        **context,
    )
    return HTMLResponse(html, status_code=http_status)


def current_session(request: Request) -> Session:
    """The live session of this request; SignInRequired if there is none."""
    session: Session | None = request.app.state.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired()
    request.state.session = session
    return session


def role(*roles: str) -> Callable[[Request], Session]:
    """A dependency admitting only sessions whose role is one of ``roles``."""

    def check(request: Request) -> Session:
        session = current_session(request)
        if session.user.role not in roles:
            raise Forbidden()
        return session

    return check


async def csrf(request: Request) -> None:
    """Refuse a state-changing request without the session's CSRF token (403)."""
    session = current_session(request)
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        form = await request.form()
        value = form.get("csrf_token")
        presented = value if isinstance(value, str) else None
    if not session.check_csrf(presented):
        raise Forbidden()


CsrfChecked = Annotated[None, Depends(csrf)]
AnySession = Annotated[Session, Depends(current_session)]


def _backend_factory(
    settings: Settings, transports: dict[str, httpx.BaseTransport]
) -> dict[str, Backend]:
    verify: str | bool = str(settings.ca_file) if settings.ca_file else True
    urls = {
        "linkage": ("linkage service", settings.linkage_url),
        "unlock": ("unlock service", settings.unlock_url),
        "audit": ("audit log", settings.audit_base),
    }
    return {
        key: Backend(
            name,
            url,
            timeout=settings.backend_timeout,
            verify=verify,
            transport=transports.get(key),
        )
        for key, (name, url) in urls.items()
    }


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    transports: dict[str, httpx.BaseTransport] | None = None,
) -> FastAPI:
    """The web service app. ``transports`` replaces the HTTP transport per backend
    (``linkage``, ``unlock``, ``audit``) for in-process tests."""
    if not (VENDOR / "govuk" / "govuk-frontend.min.css").exists():
        raise ConfigError(
            f"the front-end packages are not installed in {VENDOR}: run `pip install -e .` "
            "(it installs them from the npm registry with npm)"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        app.state.engine = (
            engine if engine is not None else store.open_engine(settings.database_url)
        )
        app.state.backends = _backend_factory(settings, transports or {})
        try:
            yield
        finally:
            for backend in app.state.backends.values():
                backend.close()
            if own:
                app.state.engine.dispose()

    app = FastAPI(title="family-linkage web", lifespan=lifespan, **NO_PUBLIC_DOCS)
    app.state.settings = settings
    app.state.templates = templates()
    app.state.sessions = SessionStore(
        idle=settings.session_idle_minutes * 60, max_age=settings.session_max_hours * 3600
    )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        nonce = secrets.token_urlsafe(16)
        request.state.nonce = nonce
        started = time.perf_counter()
        response = await call_next(request)
        # W3C Server-Timing: what bench/web_pages.py reads as the page's server time.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; "
            "style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith(("/assets/", "/static/")):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.method != "GET" or request.url.path.startswith("/relay/"):
            return render(
                request,
                "error.html",
                401,
                title="Your session has ended",
                message="Sign in again to carry on.",
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={_quote(target)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _exc: Forbidden) -> Response:
        return render(
            request,
            "error.html",
            403,
            title="You cannot do this",
            message="Your account's role does not allow this page or action, or the form "
            "had expired. Go back, reload the page and try again.",
        )

    @app.exception_handler(BackendError)
    async def backend_failed(request: Request, exc: BackendError) -> Response:
        status = exc.status if exc.status in (400, 403, 404, 409, 410, 422, 429) else 502
        # Not the message: it quotes the service's detail. A refusal the page
        # explains (4xx) is routine; a service that failed or did not answer is not.
        _logger.log(
            logging.INFO if status < 500 else logging.WARNING,
            "backend call failed",
            extra={
                "backend": exc.backend,
                "status": exc.status,
                "path": request.url.path,
                "error": type(exc.__cause__).__name__ if exc.__cause__ else None,
            },
        )
        titles = {
            403: "You cannot do this",
            404: "Not found",
            409: "This changed meanwhile",
            410: "This has been replaced",
            422: "That was not accepted",
            429: "Too many requests",
        }
        return render(
            request,
            "error.html",
            status,
            title=titles.get(status, "A service did not answer"),
            message=str(exc.detail) if exc.detail else str(exc),
        )

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        """Liveness (no data)."""
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def home(session: AnySession) -> Response:
        """Each role's first page."""
        return RedirectResponse(HOME[session.user.role], status_code=303)

    @app.get("/sign-in", response_class=HTMLResponse)
    def sign_in_page(request: Request, next: str = "/") -> Response:
        """The sign-in form."""
        return render(request, "sign_in.html", next=_safe_next(next), errors={})

    @app.post("/sign-in", response_class=HTMLResponse)
    def sign_in_post(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        code: Annotated[str, Form(max_length=16)] = "",
        next: Annotated[str, Form(max_length=512)] = "/",
    ) -> Response:
        """Check the password (and code); start a session."""
        errors: dict[str, str] = {}
        if not username.strip():
            errors["username"] = "Enter your user name"
        if not password:
            errors["password"] = "Enter your password"
        if not errors:
            try:
                user = sign_in(
                    request.app.state.engine,
                    username,
                    password,
                    code or None,
                    max_failures=settings.max_failed_sign_ins,
                    lockout_seconds=settings.lockout_minutes * 60,
                )
            except SignInError as exc:
                errors["password"] = str(exc).capitalize()
        if errors:
            return render(
                request,
                "sign_in.html",
                401,
                next=_safe_next(next),
                errors=errors,
                username=username,
            )
        request.app.state.sessions.end(request.cookies.get(COOKIE))
        session_id, session = request.app.state.sessions.start(user)
        target = _safe_next(next)
        response = RedirectResponse(HOME[user.role] if target == "/" else target, 303)
        response.set_cookie(
            COOKIE,
            session_id,
            httponly=True,
            secure=settings.cookie_secure,
            samesite="strict",
            path="/",
        )
        return response

    @app.post("/sign-out", response_class=HTMLResponse)
    def sign_out(request: Request, session: AnySession, _csrf: CsrfChecked) -> Response:
        """End the session."""
        request.app.state.sessions.end(request.cookies.get(COOKIE))
        _logger.info("signed out", extra=log_fields(session.user))
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.api_route("/relay/unlock/{target:path}", methods=["GET", "POST"])
    async def relay(
        request: Request,
        target: str,
        session: Annotated[Session, Depends(role("professional", "ig_officer"))],
    ) -> Response:
        """Forward a request the user's browser signed to the unlock service unchanged."""
        if request.method == "POST" and not session.check_csrf(request.headers.get("x-csrf-token")):
            raise Forbidden()
        path = "/" + target + (f"?{request.url.query}" if request.url.query else "")
        if not RELAY_PATHS.match(path):
            return render(request, "error.html", 404, title="Not found", message=path)
        authorization = request.headers.get("authorization", "")
        signature = request.headers.get("unlock-signature", "")
        if _jwt_subject(authorization) != session.user.professional_id:
            return Response(
                json.dumps({"detail": "the token is not this signed-in professional's"}),
                status_code=403,
                media_type="application/json",
            )
        body = await request.body()
        answer = request.app.state.backends["unlock"].relay(
            request.method, path, body, authorization, signature
        )
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    app.mount("/assets", StaticFiles(directory=VENDOR / "govuk" / "assets"), name="assets")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    from ._pages import register

    register(app)
    instrument_app(app, "web-service")
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def _safe_next(target: str) -> str:
    """Only a path on this site (never //host or a scheme) may follow sign-in."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target[:512]
    return "/"


def _jwt_subject(authorization: str) -> str | None:
    """The ``sub`` of a bearer JWT, unverified: only to match it to the session
    (the unlock service verifies the token and the signature)."""
    scheme, _, token = authorization.partition(" ")
    parts = token.split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    sub = payload.get("sub") if isinstance(payload, dict) else None
    return sub if isinstance(sub, str) else None
