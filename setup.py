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

import sys

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
