"""The read model: the SQLite lookup table synced from the runs branch, the tables derived from
it (lineage edges, outputs by hash, memo keys) and the query language compiled to its SQL."""
