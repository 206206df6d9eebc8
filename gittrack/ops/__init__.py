"""Operations on a repository's runs: sharing (push/pull), data (checkout, verify, gc), tags."""
