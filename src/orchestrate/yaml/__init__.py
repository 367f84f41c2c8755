"""Workflows defined in YAML: the same definitions as the Python API, validated with line numbers.

::

    from orchestrate.yaml import load

    workflow = load("support.yaml")                      # a Workflow, as Workflow(...) builds it
    workflow = load("support.yaml", components={"gpt-4o": model})

A file names its functions by import path (``call: support.steps:classify``, modules
next to the file included) or by component (``components:`` in the file, or
``load(..., components=...)``); rules, loop exits and map sources are small
expressions (:class:`Expression`: ``score > 0.95``), evaluated without ``eval``. Every problem
of a file is reported at once in a :class:`YamlDefinitionError`, one line each with the
file, line and column: unknown keys, wrong types, bad durations and expressions,
functions that cannot be found. A YAML workflow and its Python twin (the same nodes,
functions and expressions) have the same version. :func:`json_schema` gives the JSON
Schema of the format, for editors. A file's ``monitors:`` (the observation layer's
``Monitor``, ``DriftMonitor`` and ``OutcomeMonitor``) are kept beside the workflow it
builds: :func:`monitors_of`. The format is described in ``docs/yaml.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrate.workflow import Workflow
from orchestrate.yaml._build import build, load_file, model_step
from orchestrate.yaml._errors import Problem, YamlDefinitionError
from orchestrate.yaml._expr import FUNCTIONS, EvaluationError, Expression, ExpressionError
from orchestrate.yaml._monitors import monitors_of

__all__ = [
    "FUNCTIONS",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "Problem",
    "YamlDefinitionError",
    "json_schema",
    "load",
    "loads",
    "model_step",
    "monitors_of",
]


def load(
    path: str | os.PathLike[str],
    *,
    components: Mapping[str, Any] | None = None,
    workflows: Mapping[str, Workflow] | Sequence[Workflow] | None = None,
) -> Workflow:
    """Build the workflow defined in the YAML file at ``path``.

    Modules next to the file can be imported by its ``call:`` paths (its directory is
    added to ``sys.path``, as ``python file.py`` would), and ``subworkflow: {file: ...}``
    paths are relative to it.

    Args:
        path: the YAML file.
        components: functions and models by name, for steps without ``call:`` (by step
            name, ``model:`` or ``pipeline:``), ``call: NAME``, fallbacks and
            ``components:`` entries that ``use:`` them. A model is called with the step's
            input (see :func:`model_step`).
        workflows: graph workflows that ``subworkflow: {workflow: NAME}`` may name (a
            mapping by name, or a list named by their own names).

    Returns:
        The workflow, validated (as ``Workflow(...)`` validates).

    Raises:
        YamlDefinitionError: every problem found in the file (and in the sub-workflow
            files it names), one per line: ``file:line:column: path: message``.
    """
    return load_file(path, components=components, workflows=workflows)


def loads(
    text: str,
    *,
    source: str = "<string>",
    components: Mapping[str, Any] | None = None,
    workflows: Mapping[str, Workflow] | Sequence[Workflow] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Workflow:
    """Build the workflow defined by the YAML ``text``.

    Args:
        text: the definition.
        source: the name that errors give for the text.
        components: as for :func:`load`.
        workflows: as for :func:`load`.
        base_dir: where relative sub-workflow files and modules named by ``call:`` are
            looked for (default: modules on ``sys.path``, files from the current directory).

    Raises:
        YamlDefinitionError: every problem found, one per line.
    """
    return build(
        text,
        source=source,
        components=components,
        workflows=workflows,
        base_dir=Path(base_dir).resolve() if base_dir is not None else None,
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of YAML workflow files (draft 2020-12), for editor completion.

    Save it and point the editor at it, e.g. with a first line
    ``# yaml-language-server: $schema=workflow.schema.json``; ``orchestrate schema``
    prints it.
    """
    from orchestrate.yaml._schema import WorkflowSpec

    schema = WorkflowSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
