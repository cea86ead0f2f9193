"""Push an extract to the linkage service as a resumable upload.

:func:`push_extract` opens an upload session (the file's size and SHA-256),
sends the file in chunks at the offset the service reports, each with its
RFC 9530 ``Content-Digest``, and completes it. When a connection drops or times
out it asks the service how many bytes it holds and goes on from there, so
accepted bytes are never sent twice; after ``retries`` failures in a row it
gives up (the session stays open on the service until it idles out). The
service's refusal (a bad line, a signature that does not verify, a replayed
extract id) is raised as :class:`PushError` with the service's own message.

The HTTP client is injectable (tests pass an in-process transport).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from protocols import CONTENT_DIGEST_HEADER, UPLOAD_OFFSET_HEADER, UploadStatus

from ._errors import PushError

__all__ = ["DEFAULT_CHUNK_BYTES", "file_sha256", "push_extract"]

DEFAULT_CHUNK_BYTES = 8 * 1024**2


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("detail", body))
    return str(body)


def push_extract(
    path: Path,
    url: str,
    token: str,
    *,
    client: httpx.Client | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    retries: int = 5,
    backoff: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Upload the extract at ``path`` to the service at ``url``; the run summary.

    ``progress(sent, size)`` is called after each accepted chunk (and once on
    resuming, with the bytes the service already holds).
    """
    if not path.is_file():
        raise PushError(f"{path}: no such extract file")
    size = path.stat().st_size
    if size == 0:
        raise PushError(f"{path}: the extract is empty")
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, read=None))
    base = url.rstrip("/")
    auth = {"authorization": f"Bearer {token}"}
    failures = 0

    def call(method: str, where: str, **kw: Any) -> httpx.Response:
        """One request; transport failures retried (with the caller's resync), up to ``retries``."""
        nonlocal failures
        while True:
            try:
                response = http.request(
                    method, base + where, headers={**auth, **kw.pop("headers", {})}, **kw
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures > retries:
                    raise PushError(
                        f"{path}: cannot reach {url} ({failures} tries): {exc}"
                    ) from exc
                time.sleep(backoff * failures)
                raise _Retry from exc
            failures = 0
            return response

    try:
        opened = _call_until(
            call, "POST", "/uploads", json={"size": size, "sha256": file_sha256(path)}
        )
        if opened.status_code != 201:
            raise PushError(f"{path}: refused ({opened.status_code}): {_detail(opened)}")
        status = UploadStatus.model_validate(opened.json())
        where = f"/uploads/{status.upload_id}"
        step = max(1, min(chunk_bytes, status.max_chunk_bytes))
        offset = status.offset
        with path.open("rb") as fh:
            while offset < size:
                fh.seek(offset)
                chunk = fh.read(step)
                digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                headers = {
                    UPLOAD_OFFSET_HEADER: str(offset),
                    CONTENT_DIGEST_HEADER: f"sha-256=:{digest}:",
                    "content-type": "application/octet-stream",
                }
                try:
                    r = call("PATCH", where, content=chunk, headers=headers)
                except _Retry:
                    offset = _resync(call, where, path)
                    if progress:
                        progress(offset, size)
                    continue
                if r.status_code == 409:  # not where the service is: ask it and go on from there
                    offset = _resync(call, where, path)
                    continue
                if r.status_code != 200:
                    raise PushError(
                        f"{path}: refused at byte {offset} ({r.status_code}): {_detail(r)}"
                    )
                offset = UploadStatus.model_validate(r.json()).offset
                if progress:
                    progress(offset, size)
        done = _call_until(call, "POST", where + "/complete")
        if done.status_code != 200:
            raise PushError(f"{path}: refused ({done.status_code}): {_detail(done)}")
        summary: dict[str, Any] = done.json()
        return summary
    finally:
        if own:
            http.close()


class _Retry(Exception):
    """A request failed in transit and may be tried again (after a resync)."""


def _call_until(
    call: Callable[..., httpx.Response], method: str, where: str, **kw: Any
) -> httpx.Response:
    while True:
        try:
            return call(method, where, **dict(kw))
        except _Retry:
            continue


def _resync(call: Callable[..., httpx.Response], where: str, path: Path) -> int:
    """The offset the service holds for the upload (send from there)."""
    r = _call_until(call, "GET", where)
    if r.status_code != 200:
        raise PushError(f"{path}: cannot resume ({r.status_code}): {_detail(r)}")
    status = UploadStatus.model_validate(r.json())
    if status.state != "receiving":
        raise PushError(f"{path}: the upload is {status.state}: {status.error or ''}".rstrip(": "))
    return status.offset
