"""The apps keep to their public names (issue 14, item 2): no module imports another app's ``_private`` name.

A name that starts with ``_`` may change or go without notice; plumbing several apps share is public, in
``projectsite/`` (``projectsite.api``, ``projectsite.errors``) or in the owning app's services and selectors.
Read with the standard library's ``ast``, so imports inside functions count too; tests/ are not checked.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "annotation", "curation", "evaluation", "training", "projectsite")

# Cross-app imports of a private name that are known and waiting for their fix, as (importing file, module, name).
# Each entry must still occur (the test fails on one that is gone, so the list only shrinks); empty it, never add.
ALLOWED: set[tuple[str, str, str]] = set()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _imports_of_private_names(app: str):
    """(file, line, module, name) for each ``from <other app>... import _name`` in the app's modules."""
    for path in sorted((ROOT / app).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=relative)):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue  # a relative import stays inside its own package
            parts = node.module.split(".")
            if parts[0] not in APPS or parts[0] == app:
                continue
            for alias in node.names:
                # A private module (curation._x) is as private as a private name in a public one.
                if _private(alias.name) or any(_private(part) for part in parts[1:]):
                    yield relative, node.lineno, node.module, alias.name


def _found() -> list[tuple[str, int, str, str]]:
    return [found for app in APPS for found in _imports_of_private_names(app)]


def test_no_module_imports_another_apps_private_name():
    found = [item for item in _found() if (item[0], item[2], item[3]) not in ALLOWED]
    lines = [f"{path}:{line}: from {module} import {name}" for path, line, module, name in found]
    assert not lines, (
        "These modules import another app's private name; make the name public (or move shared plumbing to "
        "projectsite/) and import that:\n" + "\n".join(lines)
    )


def test_the_allow_list_only_names_imports_that_still_exist():
    present = {(path, module, name) for path, _, module, name in _found()}
    assert not ALLOWED - present, f"Fixed, so remove from ALLOWED: {sorted(ALLOWED - present)}"


def test_the_check_sees_a_private_import_across_apps(tmp_path, monkeypatch):
    # The check itself can fail: a module written like today's violations is caught, inside a function too.
    app = tmp_path / "training"
    app.mkdir()
    (app / "views.py").write_text(
        "from curation.apis import describe\n"
        "from training.services import _mine\n"
        "def view():\n"
        "    from curation.management.commands.import_dataset import _plain\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = list(_imports_of_private_names("training"))
    assert found == [("training/views.py", 4, "curation.management.commands.import_dataset", "_plain")]
