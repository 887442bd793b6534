"""No import cycle between the modules of one app (issue 14): imports run one way inside an app too.

Read with the standard library's ``ast``. Only imports that run when a module is loaded count: those at module
level (inside a module-level ``if`` or ``try`` too, and in class bodies), not those inside a function, which is the
accepted way to break a cycle (a service imports the task it enqueues inside the function that enqueues it), and
not those under ``if TYPE_CHECKING:``. Importing ``app.pkg.mod`` counts as an edge to that module only, not to the
package ``app.pkg`` above it; ``from app.pkg import name`` is an edge to ``app.pkg.name`` when that is a module,
otherwise to the package. tests/ are not checked.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "annotation", "curation", "evaluation", "training", "projectsite")


def _modules(root: Path, app: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the app (a package is its ``__init__``)."""
    modules = {}
    for path in sorted((root / app).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "migrations" in parts:
            continue  # Django loads migrations itself, not through the app's imports
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _load_time_imports(body: list[ast.stmt]):
    """The Import / ImportFrom nodes that run when the module is loaded."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test):
                yield from _load_time_imports(node.orelse)
                continue
            yield from _load_time_imports(node.body)
            yield from _load_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(handler.body for handler in node.handlers)):
                yield from _load_time_imports(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _load_time_imports(node.body)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]):
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    for alias in node.names:
        yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def import_graph(root: Path, app: str) -> dict[str, set[str]]:
    """Module -> the modules of the same app that it imports while it loads."""
    modules = _modules(root, app)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = {
            target
            for node in _load_time_imports(tree.body)
            for target in _targets(node, module, is_package, modules)
            if target in modules and target != module
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(_cycle_in(sorted(component), graph))
    return found


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A readable cycle through the component's first module: a -> b -> ... -> a (breadth-first, shortest)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    raise AssertionError("a strongly connected component always holds a cycle")


def test_no_import_cycle_between_the_modules_of_an_app():
    found = [" -> ".join(cycle) for app in APPS for cycle in cycles(import_graph(ROOT, app))]
    assert not found, (
        "These modules import each other while they load; move the shared part to a module both import, or "
        "import inside the function that needs it:\n" + "\n".join(found)
    )


def test_the_check_sees_a_cycle(tmp_path):
    # The check itself can fail: services -> selectors -> tasks -> services is caught, through a relative and
    # a package import; the same imports inside a function or under TYPE_CHECKING are not a cycle.
    app = tmp_path / "shop"
    (app / "services").mkdir(parents=True)
    (app / "services" / "__init__.py").write_text("from .orders import order_create\n")
    (app / "services" / "orders.py").write_text("from shop import selectors\n\ndef order_create(): ...\n")
    (app / "selectors.py").write_text("from shop.tasks import order_send\n")
    (app / "tasks.py").write_text("try:\n    from .services import orders\nexcept ImportError:\n    pass\n")
    assert cycles(import_graph(tmp_path, "shop")) == [
        ["shop.selectors", "shop.tasks", "shop.services.orders", "shop.selectors"]
    ]

    (app / "tasks.py").write_text("def order_send():\n    from .services import orders\n")
    assert cycles(import_graph(tmp_path, "shop")) == []
    (app / "tasks.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shop.services.orders import order_create\n"
    )
    assert cycles(import_graph(tmp_path, "shop")) == []
