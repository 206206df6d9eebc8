"""How big and how deep what gittrack writes and reads may be: beyond, it is damage or hostile.

Shared by the writer (model/record.py refuses values nested deeper than a record holds) and the
readers (model/schema.py refuses records nested deeper, index and store pass larger blobs over).
"""

from __future__ import annotations

MAX_DEPTH = 64  # tables and arrays inside each other a record may hold: readers refuse deeper
VALUE_DEPTH = MAX_DEPTH - 1  # ... one level of which is the table (params, env) holding a value
# the most bytes a run.toml may hold: a real record is a few KiB (a 10,000-file code list or
# a long traceback some 1 MiB), so a larger one is damage or hostile, refused unread
MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_NOTE_BYTES = 1 << 20  # a run's git note (tags, a note, memberships): more is damage
