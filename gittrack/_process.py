"""The process gittrack runs in: its start-up objects set aside from the garbage collector."""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup() -> None:
    """Move every object alive now (the modules, classes and functions loaded at start-up,
    alive until the process ends) out of the cyclic collector's reach, once per process.

    Full collections, and the one at interpreter exit (about 8 ms of every tracked script and
    command once gittrack and click are loaded), then no longer walk them. Garbage made later
    is collected as always; what was garbage already is kept until the process ends (once, so
    a bounded amount).
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
