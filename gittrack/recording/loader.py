"""Load a user's script and find the tracked command in it, for `gittrack run`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from ..errors import ScriptError


def find_command(script: Path, function: str | None = None) -> click.Command:
    """The tracked command defined in `script` (the only one, or the one named `function`)."""
    from .command import TrackedCommand

    if not script.exists():
        import shutil

        if shutil.which(str(script)):
            raise ScriptError(
                f"Script {script} does not exist, but a program {script} does; record it "
                f"with 'gittrack exec -- {script} ...'."
            )
        raise ScriptError(f"Script {script} does not exist; check the path.")
    if script.suffix != ".py":
        raise ScriptError(
            f"Script {script} is not a Python file (.py); give the simulation's .py file, or "
            "record any other program with 'gittrack exec -- PROGRAM ARGS'."
        )
    module_name = f"__gittrack_script_{abs(hash(str(script.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise ScriptError(f"Script {script} cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(script.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ScriptError(
            f"Script {script} has a syntax error at line {exc.lineno}: {exc.msg}."
        ) from exc
    except Exception as exc:
        line = _script_line(exc, script)
        raise ScriptError(
            f"Script {script} failed while loading{line}: {type(exc).__name__}: {exc} "
            "(fix the script; --debug shows the traceback)."
        ) from exc
    commands = {
        name: value for name, value in vars(module).items() if isinstance(value, TrackedCommand)
    }
    if function:
        if function not in commands:
            known = ", ".join(sorted(commands)) or "none"
            raise ScriptError(
                f"Script {script} has no tracked command named '{function}' (tracked commands: "
                f"{known})."
            )
        return commands[function]
    unique = {id(c): c for c in commands.values()}
    if not unique:
        raise ScriptError(
            f"Script {script} defines no tracked command; decorate its function with "
            "@gittrack.command()."
        )
    if len(unique) > 1:
        names = ", ".join(sorted(commands))
        raise ScriptError(
            f"Script {script} defines several tracked commands ({names}); "
            f"name one as {script.name}:FUNCTION."
        )
    return next(iter(unique.values()))


def _script_line(exc: BaseException, script: Path) -> str:
    """' at line N' for the deepest traceback frame inside `script`, if any."""
    import traceback

    lines = [
        f.lineno
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename) == script.resolve()
    ]
    return f" at line {lines[-1]}" if lines else ""
