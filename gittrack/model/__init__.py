"""Pure data: the run record, the note format, values as listed. No I/O happens here."""
