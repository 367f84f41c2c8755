"""Turning command-line text into objects: workflow targets and JSON values.

A *target* names a workflow object the way ``uvicorn`` names an app:

* ``path/to/file.py:NAME`` — the file is executed afresh on every load (so a fixed
  file is picked up by the next command) and its directory is put on ``sys.path`` so
  that it can import its neighbours;
* ``package.module:NAME`` — imported normally, with the current directory on
  ``sys.path``.

``NAME`` may be dotted (``module:registry.support``) and must be a
:class:`~orchestrate.Workflow` or a :class:`~orchestrate.DurableFunction`. Every
problem raises :class:`~orchestrate.errors.InvalidInputError` with a one-line message.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from orchestrate.errors import InvalidInputError, OrchestrateError
from orchestrate.workflow import AnyWorkflow, DurableFunction, Workflow

_MODULE_PREFIX = "_orchestrate_target_"


def is_file_target(location: str) -> bool:
    """Whether the part before the colon is a file path rather than a module name."""
    return location.endswith(".py") or "/" in location or os.sep in location


def split_target(target: str) -> tuple[str, str]:
    """Split ``LOCATION:NAME``.

    Raises:
        InvalidInputError: the text has no ``:NAME`` part or an empty location.
    """
    location, colon, name = target.rpartition(":")
    if not colon or not location or not name:
        raise InvalidInputError(f"target {target!r} must look like path/to/file.py:NAME or package.module:NAME")
    return location, name


def canonical_target(target: str) -> str:
    """The target with an absolute file path, so later commands find it from any directory."""
    location, name = split_target(target)
    if is_file_target(location):
        return f"{os.path.abspath(location)}:{name}"
    return target


def load_workflow(target: str) -> AnyWorkflow:
    """Import the module or execute the file named by ``target`` and return its workflow.

    Raises:
        InvalidInputError: the file or module is missing, fails to import, lacks the
            attribute, or the attribute is not a workflow.
    """
    location, name = split_target(target)
    module = _load_file(location, target) if is_file_target(location) else _import_module(location, target)
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise InvalidInputError(
                f"{location!r} has no attribute {name!r} (workflows there: {_workflows_in(module)})"
            )
        obj = getattr(obj, part)
    if not isinstance(obj, Workflow | DurableFunction):
        kind = type(obj).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise InvalidInputError(
            f"{name!r} in {location!r} is {article} {kind}, not a Workflow or DurableFunction "
            "(build a Workflow(...) or decorate an async function with @workflow)"
        )
    return obj


def _workflows_in(module: ModuleType) -> str:
    found = sorted(k for k, v in vars(module).items() if isinstance(v, Workflow | DurableFunction))
    return ", ".join(found) or "none"


def _load_file(location: str, target: str) -> ModuleType:
    path = os.path.abspath(location)
    if not os.path.isfile(path):
        raise InvalidInputError(f"no such file: {location!r} (from target {target!r})")
    directory = os.path.dirname(path)
    if directory not in sys.path:
        # As `python file.py` would: the file may import the modules next to it.
        sys.path.insert(0, directory)
    module_name = _module_name_for(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"cannot load {location!r} as Python code (from target {target!r})")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses, pickling and process-isolated steps look
    # the module up by name. Re-registered on every load so that an edited file is re-read.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise InvalidInputError(f"loading {location!r} failed: {_describe_error(exc, path)}") from exc
    return module


def _module_name_for(path: str) -> str:
    """The file's stem when that name is free (so spawned processes can import it), else a private name."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isidentifier():
        existing = sys.modules.get(stem)
        if existing is None or os.path.abspath(getattr(existing, "__file__", None) or "") == path:
            return stem
    return _MODULE_PREFIX + "".join(c if c.isalnum() else "_" for c in path)


def _import_module(location: str, target: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name and location.startswith(exc.name):
            raise InvalidInputError(f"no module named {location!r} (from target {target!r})") from exc
        raise InvalidInputError(f"importing {location!r} failed: {_describe_error(exc, None)}") from exc
    except Exception as exc:  # user code may raise anything while importing
        raise InvalidInputError(f"importing {location!r} failed: {_describe_error(exc, None)}") from exc


def _describe_error(exc: BaseException, path: str | None) -> str:
    """``Type: message (file, line N)`` pointing into the user's code, on one line."""
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OrchestrateError) else str(exc)
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f"SyntaxError: {exc.msg} ({os.path.basename(exc.filename or path or '?')}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if path is None or os.path.abspath(f.filename) == path]
    if user:
        frame = user[-1]
        text += f" ({os.path.basename(frame.filename)}, line {frame.lineno})"
    return text


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:  # click < 8.2 has no generic ParamType
    _ParamType = click.ParamType


class JSONParam(_ParamType):
    """A JSON value given inline (``'{"a": 1}'``) or read from a file (``@input.json``)."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the text; a value that is not text was already converted."""
        if not isinstance(value, str):
            return value
        text = value
        where = "the value"
        if value.startswith("@"):
            where = repr(value[1:])
            try:
                with open(value[1:], encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                self.fail(f"cannot read {value[1:]!r}: {exc.strerror}", param, ctx)
            except UnicodeDecodeError as exc:
                self.fail(
                    f"{where} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                    "JSON files must be UTF-8: convert it (iconv -t UTF-8) and try again",
                    param,
                    ctx,
                )
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {_clip(text)}", param, ctx)
        except RecursionError:
            self.fail(
                f"{where} nests lists or objects too deeply to read (orchestrate stores values nested at most "
                f"{MAX_DEPTH} levels): flatten it",
                param,
                ctx,
            )
        found = _lone_surrogate(parsed)
        if found is not None:
            self.fail(
                f"{where} holds a lone surrogate ({found!r}), which is not a character: no store or terminal "
                "can take it; fix the \\uXXXX escape (a pair of them, or the character itself)",
                param,
                ctx,
            )
        return parsed


MAX_DEPTH = 256
"""How deeply a stored value may nest (the codec's and the stores' limit)."""


def _lone_surrogate(value: Any) -> str | None:
    """The first string in ``value`` (keys included) holding a lone surrogate, clipped; else ``None``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                return item[max(exc.start - 10, 0) : exc.end + 10]
    return None


def _clip(text: str, size: int = 40) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= size else flat[: size - 1] + "…")


JSON_VALUE = JSONParam()
"""The click parameter type of ``--input`` and ``--value``."""
