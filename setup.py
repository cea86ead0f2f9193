"""Build the compiled kernels (Dice, Bloom filters); all other metadata lives in pyproject.toml."""

import sys

from setuptools import Extension, setup

# -O3 for the loops; no -march: the module must run on any x86_64, and its SIMD
# bodies are chosen at runtime (function-level target attributes in _dice.c).
extra = [] if sys.platform == "win32" else ["-O3", "-Wall", "-Wno-unused-function"]

setup(
    ext_modules=[
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
    ]
)
