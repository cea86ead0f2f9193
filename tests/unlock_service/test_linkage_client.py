"""The linkage client sends each call straight to its transport (no httpx.Client layer):
what goes on the wire and how failures come back."""

from __future__ import annotations

import json

import httpx
import pytest

from unlock_service._errors import LinkageError
from unlock_service._linkage import (
    AttestationNotCurrent,
    AttestationUnavailable,
    LinkageClient,
)

FAMILY = "fam_" + "ab" * 8
SHA = "cd" * 32


class Recorder:
    """A transport answering each request with the next queued response."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.answers.pop(0)


def client(recorder: Recorder) -> LinkageClient:
    return LinkageClient("http://linkage.test/", "tok-123", transport=httpx.MockTransport(recorder))


def test_get_carries_the_token_the_path_and_the_query():
    rec = Recorder(httpx.Response(409, json={"detail": "superseded"}))
    with pytest.raises(AttestationNotCurrent, match="superseded"):
        client(rec).blobs(FAMILY, SHA)
    (request,) = rec.seen
    assert request.method == "GET"
    assert (
        str(request.url) == f"http://linkage.test/families/{FAMILY}/blobs?attestation_sha256={SHA}"
    )
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["host"] == "linkage.test"
    assert request.extensions["timeout"] == httpx.Timeout(10.0).as_dict()


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "FAMILY_UNKNOWN"), (410, "FAMILY_SUPERSEDED"), (409, "BELOW_THRESHOLD")],
)
def test_attestation_statuses_map_to_reasons(status, reason):
    rec = Recorder(httpx.Response(status, json={"detail": "no"}))
    with pytest.raises(AttestationUnavailable) as refused:
        client(rec).attestation(FAMILY)
    assert refused.value.reason == reason


def test_a_body_outside_the_contract_is_a_linkage_error():
    rec = Recorder(httpx.Response(200, content=b"not json"))
    with pytest.raises(LinkageError, match="not a valid SignedAttestation"):
        client(rec).attestation(FAMILY)


def test_restrict_sends_json_and_lift_sends_delete():
    rec = Recorder(httpx.Response(200, json={}), httpx.Response(404, json={}))
    linkage = client(rec)
    linkage.restrict(FAMILY, "OPT_OUT")
    linkage.restrict(FAMILY, None)  # already lifted there: fine
    put, delete = rec.seen
    assert (put.method, put.url.path) == ("PUT", f"/restrictions/{FAMILY}")
    assert put.headers["content-type"] == "application/json"
    assert json.loads(put.content) == {"kind": "OPT_OUT"}
    assert (delete.method, delete.url.path) == ("DELETE", f"/restrictions/{FAMILY}")


def test_transport_failures_are_linkage_errors():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    linkage = LinkageClient("http://linkage.test", "t", transport=httpx.MockTransport(down))
    with pytest.raises(LinkageError, match="cannot reach the linkage service: ConnectError"):
        linkage.attestation(FAMILY)
    with pytest.raises(LinkageError, match="cannot reach"):
        linkage.restrictions()
