"""Professional pages: ask for a family, follow the decision, approve others'
requests, open a release.

The server renders the pages' frames only. Everything that talks to the unlock
service runs in the professional's browser (``static/professional.js`` with
``static/unlock.js``): it signs each request with the professional's own key
and sends it through the relay; a release is opened there too. So these routes
hold no data: they check the session and its role and name the page.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from .._app import render, role

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(role("professional"))])
_FAMILY = re.compile(r"^fam_[0-9a-f]{16,64}$")
_REQUEST = re.compile(r"^req_[0-9a-f]{16,64}$")


@router.get("/requests", response_class=HTMLResponse)
def requests_page(request: Request) -> HTMLResponse:
    """The professional's own requests, newest first."""
    return render(request, "professional/requests.html", title="Your requests")


@router.get("/requests/new", response_class=HTMLResponse)
def new_request(request: Request, family: str = "") -> HTMLResponse:
    """The form to ask for a family's identities (``?family=`` fills it in)."""
    return render(
        request,
        "professional/new.html",
        title="Ask for a family's identities",
        family_id=family if _FAMILY.match(family) else "",
    )


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(request: Request, request_id: str) -> HTMLResponse:
    """One request: its decision with reasons, and its release opened in the browser."""
    if not _REQUEST.match(request_id):
        return render(
            request,
            "error.html",
            404,
            title="Not found",
            message="A request id is req_ and 16-64 hex digits.",
        )
    return render(request, "professional/request.html", title="Request", request_id=request_id)


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(request: Request) -> HTMLResponse:
    """Requests the professional may approve or decline."""
    return render(request, "professional/approvals.html", title="Approvals")
