"""The runs branch: the only module that writes git objects and refs.

Recording a run must cost milliseconds whatever the history, so the hot path speaks git
directly: a run's objects are written from Python as one small pack (fsynced), the few trees on
the edited path are read through one `git cat-file --batch` process, and the branch moves with
a compare-and-swap `git update-ref --stdin` transaction, behind an flock that prevents retry
storms but never blocks forever. Everything here is independent of the number of runs recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import GitError as GitError
from .branch import (
    RunChanges as RunChanges,
    _remove_stale_ref_locks as _remove_stale_ref_locks,
    _update_refs as _update_refs,
    branch_lock as branch_lock,
    changed_runs as changed_runs,
    commit_to_branch as commit_to_branch,
    find_run_folder as find_run_folder,
    has_record as has_record,
    import_runs as import_runs,
    init_branch as init_branch,
    is_ancestor as is_ancestor,
    list_run_ids as list_run_ids,
    read_file as read_file,
    read_record_bytes as read_record_bytes,
    read_run_file as read_run_file,
    remove_runs as remove_runs,
    run_files as run_files,
    run_folders as run_folders,
    tip as tip,
    write_run as write_run,
    write_settings as write_settings,
)
from .objects import (
    BRANCH as BRANCH,
    CODE_REF_PREFIX as CODE_REF_PREFIX,
    EMPTY_TREE as EMPTY_TREE,
    LOCK_TIMEOUT_S as LOCK_TIMEOUT_S,
    MODE_BLOB as MODE_BLOB,
    MODE_EXEC as MODE_EXEC,
    MODE_LINK as MODE_LINK,
    MODE_SUBMODULE as MODE_SUBMODULE,
    MODE_TREE as MODE_TREE,
    NOTES_REF as NOTES_REF,
    READ_LIMITS as READ_LIMITS,
    RUNS_REF as RUNS_REF,
    STALE_REF_LOCK_S as STALE_REF_LOCK_S,
    STATS as STATS,
    ZERO as ZERO,
    CatFile as CatFile,
    Entry as Entry,
    Identity as Identity,
    ObjectWriter as ObjectWriter,
    Repo as Repo,
    _timestamp as _timestamp,
    edit_tree as edit_tree,
    find_repo as find_repo,
    format_tree as format_tree,
    make_commit as make_commit,
    parse_tree as parse_tree,
    skip_exact as skip_exact,
    write_blobs as write_blobs,
)
from .workspace import (
    Head as Head,
    Snapshot as Snapshot,
    blob_id as blob_id,
    check_writable as check_writable,
    ensure_excluded as ensure_excluded,
    head as head,
    head_state as head_state,
    script_identity as script_identity,
    snapshot_worktree as snapshot_worktree,
    temporary_worktree as temporary_worktree,
    tree_blobs as tree_blobs,
)

if TYPE_CHECKING:  # the lazy names below, for the type checker
    from .notes import (
        _note_paths as _note_paths,
        notes_tip as notes_tip,
        read_note as read_note,
        update_notes as update_notes,
    )
    from .remotes import (
        BUNDLE_CACHE_S as BUNDLE_CACHE_S,
        REMOTE_REF_PREFIX as REMOTE_REF_PREFIX,
        JoinResult as JoinResult,
        PushResult as PushResult,
        _as_tree as _as_tree,
        _commit_tree as _commit_tree,
        _is_run_folder as _is_run_folder,
        _merge3 as _merge3,
        _remote_failure as _remote_failure,
        _runs_in_edits as _runs_in_edits,
        _tree_of as _tree_of,
        adopt_remote_branch as adopt_remote_branch,
        clone_from_bundle as clone_from_bundle,
        fetch_shared as fetch_shared,
        git_remotes as git_remotes,
        join_branch as join_branch,
        make_bundle as make_bundle,
        merge_notes as merge_notes,
        push_shared as push_shared,
        ref_value as ref_value,
        remote_notes_ref as remote_notes_ref,
        remote_runs_ref as remote_runs_ref,
        run_folder_contents as run_folder_contents,
        secrets_token as secrets_token,
        settings_commit as settings_commit,
    )
    from .repair import (
        BranchRepair as BranchRepair,
        branch_damage as branch_damage,
        repair_branch as repair_branch,
    )

# sharing, notes and repairs are not needed to record a run: loaded on first use
_LAZY = {
    "BranchRepair": "repair",
    "branch_damage": "repair",
    "repair_branch": "repair",
    "BUNDLE_CACHE_S": "remotes",
    "REMOTE_REF_PREFIX": "remotes",
    "JoinResult": "remotes",
    "PushResult": "remotes",
    "_as_tree": "remotes",
    "_commit_tree": "remotes",
    "_is_run_folder": "remotes",
    "_merge3": "remotes",
    "_remote_failure": "remotes",
    "_runs_in_edits": "remotes",
    "_tree_of": "remotes",
    "adopt_remote_branch": "remotes",
    "clone_from_bundle": "remotes",
    "fetch_shared": "remotes",
    "git_remotes": "remotes",
    "join_branch": "remotes",
    "make_bundle": "remotes",
    "merge_notes": "remotes",
    "push_shared": "remotes",
    "ref_value": "remotes",
    "remote_notes_ref": "remotes",
    "remote_runs_ref": "remotes",
    "run_folder_contents": "remotes",
    "secrets_token": "remotes",
    "settings_commit": "remotes",
    "_note_paths": "notes",
    "notes_tip": "notes",
    "read_note": "notes",
    "update_notes": "notes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gittrack.gitstore' has no attribute {name!r}")
