"""Build the compiled parts; all other metadata lives in pyproject.toml.

Three C kernels (Dice, Bloom filters, the audit log's leaf scan) and, with
mypyc, the agency client's row encoder, normalisers and encoder, and the shared
sealer (``protocols/_seal.py``): the same Python source compiled to C, 10-30%
less CPU per record on one core (bench/encode_speed.py --workers 1). The sealer
is its own group, so the unlock service, which imports it, loads none of the
encoder's compiled code.
After editing a compiled module, run ``pip install -e .`` again:
tests/conftest.py refuses to run on a stale build.
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from mypyc.build import mypycify
from setuptools import Extension, setup

# The modules mypyc compiles (tests/conftest.py checks they are not stale).
MYPYC_MODULES = [
    "agency_client/_rows.py",
    "agency_client/_normalise.py",
    "agency_client/_encoder.py",
]
PROTOCOLS_MYPYC_MODULES = ["protocols/_seal.py"]

# -O3 for the loops; no -march: the module must run on any x86_64, and its SIMD
# bodies are chosen at runtime (function-level target attributes in _dice.c).
extra = [] if sys.platform == "win32" else ["-O3", "-Wall", "-Wno-unused-function"]

# The web service's front-end packages (GOV.UK Frontend, libsodium for opening
# releases in the browser, axe-core for the accessibility tests) come from the
# npm registry at the versions package-lock.json pins, installed here by the
# project's own set-up and served by the web service itself: never a CDN.
ASSETS = Path(__file__).parent / "web_service" / "assets"
VENDOR = Path(__file__).parent / "web_service" / "static" / "vendor"
VENDORED = {
    "govuk-frontend/dist/govuk/govuk-frontend.min.css": "govuk/govuk-frontend.min.css",
    "govuk-frontend/dist/govuk/govuk-frontend.min.js": "govuk/govuk-frontend.min.js",
    "govuk-frontend/dist/govuk/assets": "govuk/assets",
    "libsodium/dist/modules/libsodium.js": "sodium/libsodium.js",
    "libsodium-wrappers/dist/modules/libsodium-wrappers.js": "sodium/libsodium-wrappers.js",
}


def vendor_web_assets() -> None:
    """``npm ci`` the pinned front-end packages and copy what is served; skipped
    when the copy already matches package-lock.json."""
    lock = (ASSETS / "package-lock.json").read_bytes()
    stamp = VENDOR / ".package-lock.sha256"
    digest = hashlib.sha256(lock).hexdigest()
    modules = ASSETS / "node_modules"
    if stamp.exists() and stamp.read_text() == digest and (modules / "axe-core").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "the web service's front-end packages are installed with npm, which is not on "
            "PATH: install Node.js and npm (Debian: apt-get install nodejs npm) and run again"
        )
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ASSETS, check=True
    )
    shutil.rmtree(VENDOR, ignore_errors=True)
    for source, target in VENDORED.items():
        src, dst = modules / source, VENDOR / target
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    stamp.write_text(digest)


vendor_web_assets()

setup(
    ext_modules=[
        # In pip's isolated build only mypy is installed: the project's mypy config
        # (with the pydantic plugin) is left out and other packages are typed as Any.
        *mypycify(
            ["--config-file=", "--ignore-missing-imports", *MYPYC_MODULES],
            opt_level="3",
            group_name="agency_client_compiled",
        ),
        *mypycify(
            ["--config-file=", "--ignore-missing-imports", *PROTOCOLS_MYPYC_MODULES],
            opt_level="3",
            group_name="protocols_compiled",
        ),
        Extension(
            "linkage_service._dice",
            sources=["linkage_service/_dice.c"],
            extra_compile_args=extra,
        ),
        # Keyed BLAKE2b comes from OpenSSL 3 (EVP_MAC "BLAKE2BMAC"): building needs
        # its headers (Debian/Ubuntu libssl-dev, Fedora openssl-devel).
        Extension(
            "agency_client._bloom",
            sources=["agency_client/_bloom.c"],
            libraries=["crypto"],
            extra_compile_args=extra,
        ),
        # The audit log's start-up check and Merkle hashing: SHA-256 from OpenSSL 3.
        Extension(
            "audit_log._leafscan",
            sources=["audit_log/_leafscan.c"],
            libraries=["crypto"],
            extra_compile_args=extra,
        ),
    ]
)
