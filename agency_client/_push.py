"""Push an extract to the linkage service as a resumable upload.

:func:`push_extract` opens an upload session (the file's size), sends the
file in chunks at the offset the service reports, each with its RFC 9530
``Content-Digest``, up to two at once, and completes it with the whole file's
SHA-256, hashed from the chunks as they were read (the file is read once).
When a connection drops or times out it asks the service how many bytes it
holds and goes on from there, so accepted bytes are never sent twice; after
``retries`` failures in a row it gives up (the session stays open on the
service until it idles out). The
service's refusal (a bad line, a signature that does not verify, a replayed
extract id) is raised as :class:`PushError` with the service's own message.

The HTTP client is injectable (tests pass an in-process transport).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from protocols import CONTENT_DIGEST_HEADER, UPLOAD_OFFSET_HEADER, UploadStatus

from ._errors import PushError

__all__ = ["DEFAULT_CHUNK_BYTES", "push_extract"]

DEFAULT_CHUNK_BYTES = 8 * 1024**2


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
    in_flight: int = 2,
) -> dict[str, Any]:
    """Upload the extract at ``path`` to the service at ``url``; the run summary.

    ``progress(sent, size)`` is called after each accepted chunk (and once on
    resuming, with the bytes the service already holds). Up to ``in_flight``
    chunks are on their way at once, each on its own connection (see
    :func:`_send_chunks`); 1 sends one and waits for its answer.
    """
    if in_flight < 1:
        raise ValueError(f"in_flight must be at least 1, not {in_flight}")
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
    counting = threading.Lock()  # chunks in flight call from several threads

    def call(method: str, where: str, **kw: Any) -> httpx.Response:
        """One request; transport failures retried (with the caller's resync), up to ``retries``."""
        nonlocal failures
        try:
            response = http.request(
                method, base + where, headers={**auth, **kw.pop("headers", {})}, **kw
            )
        except httpx.TransportError as exc:
            with counting:
                failures += 1
                tries = failures
            if tries > retries:
                raise PushError(f"{path}: cannot reach {url} ({tries} tries): {exc}") from exc
            time.sleep(backoff * tries)
            raise _Retry from exc
        with counting:
            failures = 0
        return response

    try:
        # the SHA-256 of the whole is given on completing: hashed from the chunks as
        # they are read to be sent, the file is read once
        opened = _call_until(call, "POST", "/uploads", json={"size": size})
        if opened.status_code != 201:
            raise PushError(f"{path}: refused ({opened.status_code}): {_detail(opened)}")
        status = UploadStatus.model_validate(opened.json())
        where = f"/uploads/{status.upload_id}"
        step = max(1, min(chunk_bytes, status.max_chunk_bytes))
        whole = _send_chunks(call, where, path, size, status.offset, step, in_flight, progress)
        done = _call_until(call, "POST", where + "/complete", json={"sha256": whole})
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


def _send_chunks(
    call: Callable[..., httpx.Response],
    where: str,
    path: Path,
    size: int,
    offset: int,
    step: int,
    in_flight: int,
    progress: Callable[[int, int], None] | None,
) -> str:
    """Send the file from ``offset`` (0: a new upload) in chunks of ``step`` bytes, up to
    ``in_flight`` at once; the SHA-256 (hex) of the whole file, hashed from the chunks as
    they are read (every byte is read to be sent, in order, before the service holds it).

    While the service checks one chunk's lines (it holds the upload while it
    does), the next is read, hashed and sent, so the link is not idle between
    chunks. The service takes chunks only at its offset, one at a time, in the
    order they reach it. Answers are read in the order sent. On anything but
    an accepted chunk, the chunks sent after it are let finish, then: a refusal
    is raised; a conflict (a chunk that came before its predecessor was taken,
    or a replay) or a dropped connection asks the service for its offset and
    goes on from there, so a chunk the service took is never sent again.
    """
    pending: collections.deque[Future[httpx.Response]] = collections.deque()
    ahead = offset  # where the next chunk to send starts
    whole = hashlib.sha256()
    hashed = 0  # bytes of the file in ``whole``, from its start
    with path.open("rb") as fh, ThreadPoolExecutor(in_flight, "push") as pool:

        def read(at: int, n: int) -> bytes:
            """``n`` bytes of the file from ``at``, hashed into ``whole`` if they are next."""
            nonlocal hashed
            if at > hashed:  # the service never holds bytes this push has not read
                raise PushError(f"{path}: the service holds bytes from {hashed} not sent")
            fh.seek(at)
            data = fh.read(n)
            if at <= hashed < at + len(data):
                whole.update(memoryview(data)[hashed - at :])
                hashed = at + len(data)
            return data

        def send(at: int) -> Future[httpx.Response]:
            """Send the chunk at ``at``; return once its bytes are all written (or it failed)."""
            chunk = read(at, step)
            digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
            headers = {
                UPLOAD_OFFSET_HEADER: str(at),
                CONTENT_DIGEST_HEADER: f"sha-256=:{digest}:",
                "content-type": "application/octet-stream",
                "content-length": str(len(chunk)),
            }
            written = threading.Event()

            def body() -> Iterator[bytes]:
                yield chunk  # asked for more only once the transport has written it
                written.set()

            sending = pool.submit(call, "PATCH", where, content=body(), headers=headers)
            # the next chunk starts after this one's last byte (or its failure): it
            # reaches the service after this one, which the service then takes first
            sending.add_done_callback(lambda _: written.set())
            written.wait()
            return sending

        while offset < size:
            # send more unless an answer is in already (a refusal stops the sending)
            if len(pending) < in_flight and ahead < size and not (pending and pending[0].done()):
                pending.append(send(ahead))
                ahead = min(size, ahead + step)
                continue
            at = offset
            try:
                r: httpx.Response | None = pending.popleft().result()
            except _Retry:
                r = None
            if r is not None and r.status_code == 200:
                offset = UploadStatus.model_validate(r.json()).offset
                if progress:
                    progress(offset, size)
                continue
            for later in pending:  # they end (their outcome is asked for below)
                with contextlib.suppress(_Retry):
                    later.result()
            pending.clear()
            if r is not None and r.status_code != 409:
                raise PushError(f"{path}: refused at byte {at} ({r.status_code}): {_detail(r)}")
            offset = ahead = _resync(call, where, path)
            if r is None and progress:
                progress(offset, size)
    return whole.hexdigest()


def _resync(call: Callable[..., httpx.Response], where: str, path: Path) -> int:
    """The offset the service holds for the upload (send from there)."""
    r = _call_until(call, "GET", where)
    if r.status_code != 200:
        raise PushError(f"{path}: cannot resume ({r.status_code}): {_detail(r)}")
    status = UploadStatus.model_validate(r.json())
    if status.state != "receiving":
        raise PushError(f"{path}: the upload is {status.state}: {status.error or ''}".rstrip(": "))
    return status.offset
