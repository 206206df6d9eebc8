"""Run ids as people see them: the first characters, as git shows short commit ids."""

SHORT = 8  # characters of a short run id (enough to be unique in a sweep's runs)


def short(run_id: str) -> str:
    """The short form of a run id (or of a commit id, shown the same way)."""
    return run_id[:SHORT]
