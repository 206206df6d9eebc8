"""sha1 and sha256 without importing hashlib (and OpenSSL) on the recording path.

CPython's built-in hash modules load in well under a millisecond, `hashlib` takes several to
load OpenSSL; both give the same digests. Hashing big data (outputs) stays with hashlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import sha1 as sha1, sha256 as sha256
else:
    try:
        from _sha1 import sha1 as sha1
    except ImportError:  # pragma: no cover - a Python built without its own hashes
        from hashlib import sha1 as sha1
    try:
        from _sha256 import sha256 as sha256  # Python 3.11
    except ImportError:  # pragma: no cover
        try:
            from _sha2 import sha256 as sha256  # Python 3.12 and later
        except ImportError:
            from hashlib import sha256 as sha256
