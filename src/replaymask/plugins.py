"""The user's own modules: imported by ``--import MODULE``, a sweep file's ``import:`` list,
or as installed plugins (the entry-point group ``replaymask.plugins``).

Importing a module runs its code: that is how its ``@register_benchmark`` and
``@register_backbone`` decorators make names. Only import modules you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError, describe

ENTRY_POINT_GROUP = "replaymask.plugins"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a registered benchmark's or network's
_LOADED_ENTRY_POINTS: list[str] = []  # names loaded in this process
_entry_points_loaded = False


def check_new_name(kind: str, name, reserved) -> None:
    """A name a user's module registers (``kind``: "benchmark" or "backbone"): letters,
    digits, '.', '_' or '-', and not one of the built-in ``reserved`` names."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise ConfigError(f"a {kind}'s name must be letters, digits, '.', '_' or '-' (at most "
                          f"64, starting with a letter or digit), got {describe(name)}")
    if name in reserved:
        raise ConfigError(f"{name!r} is a built-in {kind}'s name: choose another")


def check_registration(kind: str, name: str, earlier, function) -> None:
    """``function`` may register ``name`` unless another function already has (the same
    one again is a re-imported module, as a notebook does)."""
    if not callable(function):
        raise ConfigError(f"register_{kind}({name!r}) decorates a function, got "
                          f"{describe(function)}")
    if earlier is not None and qualified_name(earlier) != qualified_name(function):
        raise ConfigError(f"{kind} {name!r} is registered twice: by {qualified_name(earlier)} "
                          f"and {qualified_name(function)}")


def qualified_name(thing) -> str:
    """``module.qualname`` of a function or class (of an object's class otherwise)."""
    if thing is None:
        return "?"
    name = getattr(thing, "__qualname__", type(thing).__name__)
    return f"{getattr(thing, '__module__', '?')}.{name}"


def import_modules(modules: Iterable[str], search: Iterable[str | Path] = ()) -> list[str]:
    """Import each of ``modules``: a module name or the path of a ``.py`` file, looked for
    in the folders ``search`` in their order (default: the current folder), before the
    rest of ``sys.path``. Returns what was imported, each as the name or absolute path
    that imports it again (in a sweep's worker). A module that cannot be imported is a
    one-line ConfigError naming it and why."""
    folders = [Path(folder) for folder in search] or [Path.cwd()]
    imported = []
    for module in modules:
        if not isinstance(module, str) or not module.strip():
            raise ConfigError(f"an import must be a module name or a .py file, got {module!r}")
        imported.append(_import_one(module.strip(), folders))
    return imported


def _import_one(module: str, folders: list[Path]) -> str:
    try:
        if module.endswith(".py"):
            return _import_file(module, folders)
        for folder in reversed(folders):  # the first folder ends up first on the path
            if str(folder) in sys.path:
                sys.path.remove(str(folder))
            sys.path.insert(0, str(folder))
        importlib.import_module(module)
        return module
    except KeyboardInterrupt:
        raise
    except ConfigError as error:  # raised by the module's own registrations
        raise ConfigError(f"cannot import {module!r}: {error}") from None
    except BaseException as error:  # the module's own code raised: say what, in one line
        raise ConfigError(f"cannot import {module!r}: {_why(error)}") from None


def _import_file(module: str, folders: list[Path]) -> str:
    path = Path(module)
    path = next((folder / path for folder in folders if (folder / path).is_file()), path)
    if not path.is_file():
        raise ConfigError("no such file")
    path = path.resolve()
    name = f"replaymask_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
    return str(path)


def _why(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_entry_point_plugins() -> list[str]:
    """Import every installed plugin (entry-point group ``replaymask.plugins``), once per
    process; returns their names. A plugin that fails to import is a one-line
    ConfigError naming it."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in _LOADED_ENTRY_POINTS:
                continue
            try:
                entry.load()
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # said again at the next look-up, not skipped
                raise ConfigError(f"the installed replaymask plugin {entry.name!r} "
                                  f"({entry.value}) cannot be imported: {_why(error)}") from None
            _LOADED_ENTRY_POINTS.append(entry.name)
        _entry_points_loaded = True
    return list(_LOADED_ENTRY_POINTS)
