"""Which sercore source a computation depends on: the modules it imports, found by parsing the imports.

    modules = module_closure(["sercore.train.run", "sercore.models.fusion", "sercore.attention.kda"])
    source_key(modules)                       -> sha256 of those modules' files
    notebook_imports(code)                    -> the sercore modules a notebook's code imports

A training run keys its result on the source it runs (sercore.train.run.code_key) and a book page keys its
executed copy on the source its code imports (sercore.book.inputs_hash), so an edit re-runs what it can
change and nothing else. The import graph is read from the files with `ast`, never kept by hand: every
`import` and `from ... import` of a sercore module, at module level or inside a function (a lazy import runs
when the function does), and the parent packages whose __init__ an import executes.

Two readings of a package's __init__, one per user:
  precise (dispatch=False; training runs). A package __init__ that re-exports names from its submodules
      does not pull them all in: `from sercore.data import load_corpus` follows the re-export to
      sercore/data/corpus.py, not to the corpus generator that sercore.data also re-exports. Code of the
      __init__'s own (build_model, attention.build) reaches submodules only through name -> class registries
      (sercore.models.STUDIES, sercore.attention._REGISTRY); a run adds the modules of the classes it
      instantiated as entries instead (sercore.train.run.code_key), so a kda run is keyed on
      sercore/attention/kda.py and a softmax run is not. A whole-module import (`import sercore.features`,
      `from sercore import attention`) or a name that the __init__ neither defines nor imports (one served by
      a module __getattr__) follows everything the __init__ imports.
  conservative (dispatch=True; book pages). Every import of every module reached is followed, and so is
      every string literal naming a sercore module (an importlib registry), because a page's training runs
      pick their model and mechanism at run time: a page that trains any mechanism depends on all of them.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NAME = "sercore"
_MODULE_STRING = re.compile(rf"{NAME}(\.\w+)+")


def module_file(module: str, root: Path | None = None) -> Path | None:
    """The file of sercore module `module` under `root` (the package folder), or None when there is none."""
    root = Path(root or PACKAGE)
    parts = module.split(".")
    if parts[0] != NAME:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _parse(path: Path, where: str) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as error:
        raise SyntaxError(f"{path}:{error.lineno}: cannot parse it to find {where}'s imports: {error.msg}") from None


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module name of a `from X import ...` statement in `module` (relative imports resolved)."""
    if not node.level:
        return node.module
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else [])) or None


class _Module:
    """One module's import statements: whole-module imports, names imported from modules, what it binds."""

    def __init__(self, module: str, path: Path, root: Path):
        self.module, self.path, self.is_package = module, path, _is_package(path)
        tree = _parse(path, module)
        self.wholes: set[str] = set()  # modules imported as modules (import X, from P import X)
        self.names: set[tuple[str, str]] = set()  # (module, name): from module import name, name not a module
        self.reexports: dict[str, set[str]] = {}  # name bound at top level by an import -> the modules it follows
        self.strings: set[str] = set()  # string literals naming an existing sercore module
        self.defines: set[str] = set()  # names the module's own top-level code binds (def, class, =)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == NAME and module_file(alias.name, root):
                        self.wholes.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, self.is_package, node)
                if not base or base.split(".")[0] != NAME or not module_file(base, root):
                    continue
                for alias in node.names:
                    if alias.name == "*":
                        self.wholes.add(base)
                    elif module_file(f"{base}.{alias.name}", root):
                        self.wholes.add(f"{base}.{alias.name}")
                    else:
                        self.names.add((base, alias.name))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    _MODULE_STRING.fullmatch(node.value) and module_file(node.value, root):
                self.strings.add(node.value)
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                base = _absolute(module, self.is_package, node) if isinstance(node, ast.ImportFrom) else None
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    if isinstance(node, ast.Import):
                        target = {alias.name}
                    elif base and module_file(f"{base}.{alias.name}", root):
                        target = {f"{base}.{alias.name}"}
                    else:
                        target = {base} if base else set()
                    self.reexports.setdefault(bound, set()).update(
                        t for t in target if t.split(".")[0] == NAME and module_file(t, root))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defines.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self.defines.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))

    def edges(self, how: str, dispatch: bool, name: str | None = None) -> list[tuple[str, str, str | None]]:
        """(module, how, name) reached from this module when it is reached `how` (whole, parent or name)."""
        own = f"{self.module}."
        wholes = self.wholes | (self.strings if dispatch else set())
        names = self.names
        if not dispatch and self.is_package and how != "whole":
            if how == "name" and name not in self.defines:
                if name in self.reexports:
                    return [(target, "whole", None) for target in self.reexports[name]]
                how = "whole"  # e.g. a name served by a module __getattr__: follow everything
            if how != "whole":  # parent, or a name the __init__ defines: its own submodules are not pulled in
                wholes = {m for m in wholes if not m.startswith(own)}
                names = {(m, n) for m, n in names if not m.startswith(own)}
        return [(m, "whole", None) for m in wholes] + [(m, "name", n) for m, n in names]


_PARSED: dict[tuple, _Module] = {}  # (module, file, its bytes) -> parsed: a key is computed once per run and page


def _parsed(module: str, path: Path, root: Path) -> _Module:
    key = (module, str(path), path.read_bytes())
    if key not in _PARSED:
        _PARSED[key] = _Module(module, path, root)
    return _PARSED[key]


def module_closure(entries, root: Path | None = None, dispatch: bool = False) -> set[str]:
    """The sercore modules that importing `entries` (module names) runs, with the parent packages; see the
    module docstring for `dispatch`. An entry that names no file under `root` is refused."""
    root = Path(root or PACKAGE)
    parsed: dict[str, _Module] = {}
    seen: set[tuple[str, str, str | None]] = set()
    todo = []
    for entry in entries:
        if not module_file(entry, root):
            raise ValueError(f"{entry}: no such module under {root}")
        todo.append((entry, "whole", None))
    modules: set[str] = set()
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        module, how, name = item
        modules.add(module)
        parts = module.split(".")
        todo.extend((".".join(parts[:i]), "parent", None) for i in range(1, len(parts)))
        if module not in parsed:
            parsed[module] = _parsed(module, module_file(module, root), root)
        if how == "name" and not parsed[module].is_package:
            how, name = "whole", None  # a name from a plain module: the whole module runs
        todo.extend(parsed[module].edges(how, dispatch, name))
    return modules


def all_modules(root: Path | None = None) -> set[str]:
    """Every module of the package under `root`."""
    root = Path(root or PACKAGE)
    return {".".join((NAME, *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
            for path in root.rglob("*.py") if "__pycache__" not in path.parts}


def source_key(modules, root: Path | None = None) -> str:
    """sha256 of the files of `modules` (names relative to the package, then their bytes), in name order."""
    root = Path(root or PACKAGE)
    digest = hashlib.sha256()
    for module in sorted(modules):
        path = module_file(module, root)
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def notebook_imports(code: str, where: str = "notebook", root: Path | None = None) -> set[str]:
    """The sercore modules under `root` that `code` (a notebook's code cells joined) imports; IPython lines
    (%, !) are skipped. `from sercore import plots` names sercore.plots; `from sercore.data import x` names
    sercore.data (and sercore.data.x when that is a module). A module with no file is left out: importing
    it fails the page itself."""
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as error:
        raise SyntaxError(f"{where}: cannot parse its code to find its sercore imports (line {error.lineno} "
                          f"of its code cells): {error.msg}") from None
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module.split(".")[0] == NAME:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return {module for module in found if module_file(module, root)}
