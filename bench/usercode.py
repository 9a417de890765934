"""A user's own code, named in a study as an import path (``package.module:function``): found, called, and
every way it can go wrong said in one line.

A path is looked up from the study file's folder first (a ``models.py`` beside the study is ``models:build``),
then the working directory, then the installed packages.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.errors import UserError

PATH_FORM = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

# Folders an import path is looked up in before sys.path: the study files' folders, set as they are read.
_FOLDERS: list[Path] = []


def add_folder(folder: Path) -> None:
    """Look import paths up in ``folder`` too (a study's own folder), before the working directory."""
    folder = folder.resolve()
    if folder not in _FOLDERS:
        _FOLDERS.insert(0, folder)


def check_path(path: str, where: str) -> None:
    if not isinstance(path, str) or not PATH_FORM.fullmatch(path):
        raise UserError(f"{where}: an import path is package.module:function, got {path!r}")


@contextlib.contextmanager
def _search_path() -> Iterator[None]:
    """The study folders and the working directory first on sys.path; no bytecode cache written beside the
    user's files (a command that refuses its input leaves the folder as it found it)."""
    extra = [str(f) for f in _FOLDERS] + [str(Path.cwd())]
    saved, saved_flag = list(sys.path), sys.dont_write_bytecode
    sys.path[:0] = [p for p in extra if p not in sys.path]
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.path[:], sys.dont_write_bytecode = saved, saved_flag


def resolve(path: str, where: str) -> Callable[..., Any]:
    """The function an import path names; a path that does not resolve is a :class:`UserError`."""
    check_path(path, where)
    module_name, _, name = path.partition(":")
    with _search_path():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise UserError(f"{where}: cannot import {module_name!r} ({exc})") from None
        except Exception as exc:  # the user's module itself failed while being imported
            raise UserError(f"{where}: importing {module_name!r} raised {_one_line(exc)}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise UserError(f"{where}: module {module_name!r} has no {name!r}")
    if not callable(fn):
        raise UserError(f"{where}: {path} is a {type(fn).__name__}, not a function")
    return fn


def call(fn: Callable[..., Any], path: str, where: str, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; whatever it raises is a :class:`UserError` naming the path (and a keyword
    argument it does not take, the study's ``args`` that do not fit)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise UserError(f"{where}: {path} cannot be called with {_shown(args, kwargs)}: {exc}") from None
    except ValueError:
        pass  # no signature to read (a builtin): called as it is
    try:
        with _search_path():  # the function may import its own siblings
            return fn(*args, **kwargs)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{where}: {path} raised {_one_line(exc)}") from None


def takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (or any keyword argument)."""
    try:
        params = inspect.signature(fn).parameters
    except ValueError:
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _shown(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
