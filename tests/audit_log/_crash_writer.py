"""Subprocess for test_crash: append forever from 4 threads, print each acknowledged index.

Usage: python _crash_writer.py DB_URL SKEY_FILE. Checkpoints are signed in the
main thread all the while, so a kill can land in any phase.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from audit_log._log import AuditLog
from audit_log._note import NoteSigner
from tests.audit_log._factories import make_entry


def main() -> None:
    url, skey_file = sys.argv[1], sys.argv[2]
    signer = NoteSigner.from_skey(Path(skey_file).read_text())
    log = AuditLog.open(url, signer)
    lock = threading.Lock()

    def worker(k: int) -> None:
        n = 0
        while True:
            index = log.append(make_entry("decision", k * 1_000_000 + n)).index
            n += 1
            with lock:
                sys.stdout.write(f"{index}\n")
                sys.stdout.flush()

    for k in range(4):
        threading.Thread(target=worker, args=(k,), daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        log.checkpoint()


if __name__ == "__main__":
    main()
