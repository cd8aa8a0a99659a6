"""dvc.yaml lists, for every stage, each pipeline module the stage imports (directly or not), so that a code
change reruns exactly the stages it can affect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(module: str) -> set[Path]:
    """Files of every ``pipeline`` module that ``module`` imports, transitively."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                todo.append(node.module)
                todo.extend(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names if alias.name.startswith("pipeline"))
    return {p for p in seen if p.name != "__init__.py" or p.parent != ROOT / "pipeline"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_dependency(stage):
    module = STAGES[stage]["cmd"].split("python -m ")[1].split()[0]
    deps = [ROOT / d for d in STAGES[stage]["deps"] if isinstance(d, str) and not d.startswith("$")]
    missing = sorted(str(f.relative_to(ROOT)) for f in imported_files(module)
                     if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"stage {stage} imports {missing} but dvc.yaml does not list them as deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_code_dependency_is_imported(stage):
    """The other way round: a listed module the stage does not import would rerun it for nothing."""
    module = STAGES[stage]["cmd"].split("python -m ")[1].split()[0]
    used = imported_files(module)
    code = [ROOT / d for d in STAGES[stage]["deps"] if isinstance(d, str) and d.startswith("pipeline")]
    stale = sorted(str(d.relative_to(ROOT)) for d in code if not any(f == d or d in f.parents for f in used))
    assert not stale, f"stage {stage} lists {stale} as deps but does not import them"


def declared_params(stage_file: Path) -> tuple[str, ...]:
    """The stage's ``PARAMS``, after checking that its ``load_params`` call passes them as ``sections``."""
    tree = ast.parse(stage_file.read_text())
    declared = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["PARAMS"]]
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "load_params"]
    assert len(declared) == 1 and len(calls) == 1, f"{stage_file.name}: one PARAMS and one load_params call"
    sections = [kw.value for kw in calls[0].keywords if kw.arg == "sections"]
    assert [getattr(s, "id", None) for s in sections] == ["PARAMS"], f"{stage_file.name}: load_params(sections=PARAMS)"
    return declared[0]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_checks_the_params_dvc_yaml_lists(stage):
    """A stage runs the cross-field checks of the sections it reads, which are the ones dvc.yaml reruns it for."""
    module = STAGES[stage]["cmd"].split("python -m ")[1].split()[0]
    assert list(declared_params(module_file(module))) == STAGES[stage]["params"]
