"""The linkage service: matches people and households on encodings, never on names.

Holds Bloom-filter encodings, keyed tokens, coarse attributes, indicators and
sealed identity blobs (which it cannot open). It never holds the linkage secret,
a plaintext identifier, or the unlock service's private key.
"""

__all__: list[str] = []
