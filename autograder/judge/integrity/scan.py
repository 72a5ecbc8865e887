"""The AST walk of the integrity scan (:mod:`autograder.judge.integrity`): the rules applied to a parsed file.

:func:`scan_tree` resolves every name of the file to a dotted name (:mod:`.resolve`) and applies the
rules (:mod:`.names`, :mod:`.rules`) to each name, attribute, call, assignment and string constant.
"""

from __future__ import annotations

import ast
import re

from .names import MODULE_KEYS, lookup, match
from .resolve import IMPORTERS, Resolved, Resolver
from .rules import (
    ATTRS,
    EXITS,
    FILE_METHODS,
    LONG_STRING,
    MUTATORS,
    OPENERS,
    SAFE_DUNDERS,
    SIGNALS,
    STRING_NAMES,
    STRING_PATTERNS,
)
from .syntax import bound_names, const_str, is_dunder, is_main_guard, source, through_class

_WRITE_MODE = re.compile(r"^[rwxabtU+]*[wxa+][rwxabtU+]*$")
_SETATTRS = frozenset(
    {
        "builtins.setattr",
        "builtins.delattr",
        "builtins.object.__setattr__",
        "builtins.object.__delattr__",
        "builtins.type.__setattr__",
        "builtins.type.__delattr__",
    }
)
_NAMED_BY_STRING = frozenset({*IMPORTERS, "builtins.getattr", "builtins.hasattr", *_SETATTRS})
Found = tuple[int, str, str]  # (line, category, detail)


def scan_tree(tree: ast.Module) -> list[Found]:
    """Every (line, category, detail) the rules find in a parsed file, once per line, category and rule."""
    return _Scanner().scan(tree)


def _member_rule(name: str | None) -> bool:
    """Whether a rule of its own (not just its module's) flags ``name``, so that its bare attribute need not."""
    hit = match(name) if name else None
    return bool(hit and hit[0] not in MODULE_KEYS)


class _Scanner(Resolver, ast.NodeVisitor):
    """One walk over a parsed file: resolve names through its imports and aliases, flag what the rules name."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet: set[int] = set()  # ids of strings that are bare statements (docstrings)
        self.found: dict[tuple[int, str], list[str]] = {}  # (line, category) -> details
        self.keys: set[tuple[int, str, str]] = set()  # (line, category, rule) already recorded
        self.in_main = False
        self.getppid: list[int] = []
        self.allowed: set[int] = set()  # ids of the inner links of allowed names (``importlib.util`` of find_spec)

    def scan(self, tree: ast.Module) -> list[Found]:
        """The flags of ``tree``: aliases first (:meth:`Resolver.bind`), then one visit."""
        self.bind(tree)
        self.quiet = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        self.visit(tree)
        if any(key in SIGNALS for _, _, key in self.keys):
            for line in self.getppid:
                self._add(line, "procfs", "os.getppid", "os.getppid: finds the parent process, next to signals")
        found = []
        for (line, category), details in self.found.items():
            details.sort(key=lambda d: "." not in d.split(":")[0])  # named rules (sys._getframe) before bare attributes
            more = f"; +{len(details) - 3} more" if len(details) > 3 else ""
            found.append((line, category, "; ".join(details[:3]) + more))
        return found

    def _add(self, line: int, category: str, key: str, detail: str) -> None:
        """Record a finding once per (line, category, rule); one flag per (line, category) lists them all."""
        if (line, category, key) not in self.keys:
            self.keys.add((line, category, key))
            self.found.setdefault((line, category), []).append(detail)

    def visit(self, node: ast.AST) -> None:
        """Visit ``node``; a statement nested too deeply for Python's stack is flagged and the walk goes on."""
        if not isinstance(node, ast.stmt):
            return super().visit(node)
        try:
            super().visit(node)
        except RecursionError:
            self._add(node.lineno, "obfuscation", "deep", "an expression nested too deeply to scan")

    def _rule(self, node: ast.AST, hit: tuple[str, str, str], shown: str) -> None:
        """Record what rule ``hit`` found at ``node``, except an exit under ``if __name__ == "__main__":``."""
        key, category, explanation = hit
        if not (self.in_main and key in EXITS):
            self._add(node.lineno, category, key, f"{shown}: {explanation}")  # type: ignore[attr-defined]

    def _check_import(self, node: ast.AST, name: str, member: bool) -> None:
        """An imported module (``member``: a name imported from one): modules are flagged here, once."""
        hit = match(name)
        if hit and (member or hit[0] in MODULE_KEYS):
            self._rule(node, hit, name)

    def _check_ref(self, node: ast.AST, resolved: Resolved | None) -> None:
        """A use of a name; a flagged module is not flagged again where its own import already was."""
        if resolved is None or id(node) in self.allowed:
            return
        name, imported = resolved
        if name == "os.getppid":
            self.getppid.append(node.lineno)  # type: ignore[attr-defined]
        hit = match(name)
        if not hit:
            return
        via = match(imported) if imported else None  # the rule its import was flagged under, if any
        if hit[0] in MODULE_KEYS and (imported == "" or (via and via[0] == hit[0])):
            return  # a bare builtin (``list`` is not the builtins module), or flagged where it was imported
        text = source(node)
        self._rule(node, hit, name if text == name else f"{name} (written {text})")

    def _attr(self, node: ast.AST, name: str) -> None:
        """Record the ``ATTRS`` rule of attribute ``name`` (flagged on any object)."""
        category, explanation = ATTRS[name]
        self._add(node.lineno, category, name, f"{name}: {explanation}")  # type: ignore[attr-defined]

    def _patch(self, node: ast.expr, owner_node: ast.expr, what: str) -> None:
        """An assignment or ``del`` of ``owner.what``: a monkeypatch when the owner was imported or is a class."""
        owner = self.imported(owner_node)
        verb = "deletes" if isinstance(getattr(node, "ctx", None), ast.Del) else "assigns"
        if owner == "os.environ" or f"{owner}{what}" == "os.environ":  # os.environ[k] = v, os.environ |= {...}
            self._add(node.lineno, "filesystem", "os.environ", "os.environ: writes the environment")
        elif owner or through_class(owner_node) or (is_dunder(what[1:]) and what[1:] not in SAFE_DUNDERS):
            name = owner or source(owner_node)
            self._add(node.lineno, "monkeypatch", name + what, f"{verb} {name}{what}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_import(node, alias.name, member=False)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        """``from m import name`` is checked as ``m.name``; relative imports are the submission's own modules."""
        if node.level > 1:
            self._add(
                node.lineno,
                "import_machinery",
                "relative",
                f"from {'.' * node.level}{node.module or ''} import ...: reaches above the submission's package",
            )
        if node.level == 0 and node.module:
            for alias in node.names:
                star = alias.name == "*"
                self._check_import(node, node.module if star else f"{node.module}.{alias.name}", member=not star)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        """Decorators, defaults and annotations in the enclosing scope; the body in the function's own."""
        if not isinstance(node, ast.Lambda):
            if is_dunder(node.name) and node.name in ATTRS:
                self._attr(node, node.name)
            for item in [*node.decorator_list, node.returns]:
                if item:
                    self.visit(item)
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg and arg.annotation:
                self.visit(arg.annotation)
        for default in [*a.defaults, *a.kw_defaults]:
            if default:
                self.visit(default)
        self.scopes.append(bound_names(node))
        for stmt in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(stmt)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        """Note when the body is ``if __name__ == "__main__":`` (exits there are a script's, not the grader's)."""
        guard = not self.in_main and is_main_guard(node.test)
        self.in_main = self.in_main or guard
        for stmt in node.body:
            self.visit(stmt)
        self.in_main = self.in_main and not guard
        for stmt in [node.test, *node.orelse]:
            self.visit(stmt)

    def visit_Name(self, node: ast.Name) -> None:
        if is_dunder(node.id) and node.id in ATTRS:
            self._attr(node, node.id)
        if isinstance(node.ctx, ast.Load):
            self._check_ref(node, self.resolve(node))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        """Attribute names on any object, module namespaces, dunder chains, patches, and the name's own rule."""
        resolved = self.resolve(node)
        if node.attr in ATTRS and not _member_rule(resolved[0] if resolved else None):  # sys._getframe has one
            self._attr(node, node.attr)
        owner = self.imported(node.value)
        if node.attr == "__dict__" and owner:
            self._add(node.lineno, "import_machinery", "__dict__", f"{owner}.__dict__: a module's namespace, directly")
        elif (
            is_dunder(node.attr)
            and node.attr not in SAFE_DUNDERS
            and isinstance(node.value, ast.Attribute)
            and is_dunder(node.value.attr)
        ):
            self._add(node.lineno, "import_machinery", "dunders", f"{source(node)}: walks the interpreter's dunders")
        if not isinstance(node.ctx, ast.Load):
            self._patch(node, node.value, f".{node.attr}")
        found = lookup(resolved[0]) if resolved else None
        if id(node) in self.allowed or (found and found[1] is None):
            self.allowed.add(id(node.value))
        self._check_ref(node, resolved)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if not isinstance(node.ctx, ast.Load):
            self._patch(node, node.value, "[...]")
        self._check_ref(node, self.resolve(node))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        """Dynamic imports, getattr and friends, ``vars(module)``, opening files for writing, method calls."""
        func = self.called(node)
        if func in _NAMED_BY_STRING:  # the string is the call's own finding, not another one
            self.quiet.update(id(arg) for arg in node.args[:2])
        if func in IMPORTERS and node.args:
            module = const_str(node.args[0])
            if module:
                self._check_import(node, module, member=False)
        elif func in ("builtins.getattr", "builtins.hasattr") or func in _SETATTRS:
            self._attr_call(node, func)
        elif func == "builtins.vars" and node.args and self.imported(node.args[0]):
            self._add(node.lineno, "import_machinery", "vars", f"{source(node)}: a module's namespace, directly")
        if func in OPENERS or (isinstance(node.func, ast.Attribute) and node.func.attr == "open"):
            self._open(node, 1 if func in OPENERS else 0)
        if isinstance(node.func, ast.Attribute):
            self._method(node, node.func)
        self._check_ref(node, self.resolve(node))
        self.generic_visit(node)

    def _attr_call(self, node: ast.Call, func: str) -> None:
        """``getattr``/``hasattr``/``setattr``/``delattr`` (and ``object.__setattr__``) on imported things."""
        if len(node.args) < 2:
            return
        attr, owner = const_str(node.args[1]), self.imported(node.args[0])
        short = func.rsplit(".", 1)[1]
        if attr is None:
            if owner:
                self._add(
                    node.lineno,
                    "obfuscation",
                    f"{short}?",
                    f"{short}({owner}, <computed name>): an attribute name built at run time",
                )
            return
        if attr in ATTRS and not _member_rule(owner and f"{owner}.{attr}"):
            self._attr(node, attr)
        odd = is_dunder(attr) and attr not in SAFE_DUNDERS  # setattr(obj, "__class__", ...) on anything
        if func in _SETATTRS and (owner or odd or through_class(node.args[0])):
            name = owner or source(node.args[0])
            self._add(node.lineno, "monkeypatch", f"{name}.{attr}", f"{short}({name}, {attr!r}): changes {name}")

    def _open(self, node: ast.Call, mode_at: int) -> None:
        """``open(path, "w")``, ``io.open``, ``Path(...).open("a")``: opening a file for writing."""
        mode_node = next(
            (k.value for k in node.keywords if k.arg == "mode"),
            node.args[mode_at] if len(node.args) > mode_at else None,
        )
        mode = const_str(mode_node)
        if mode and _WRITE_MODE.match(mode):
            self._add(node.lineno, "filesystem", "open", f"{source(node)}: opens a file for writing")

    def _method(self, node: ast.Call, func: ast.Attribute) -> None:
        """File methods on any object (``Path.write_text``); in-place changes of an imported module's data."""
        if func.attr in FILE_METHODS and not self.imported(func.value):  # os.unlink: a rule of its own
            self._add(node.lineno, "filesystem", func.attr, f".{func.attr}(): writes, deletes or lists files")
        owner = self.imported(func.value) if func.attr in MUTATORS else None
        if owner == "os.environ":
            self._add(node.lineno, "filesystem", "os.environ", f"os.environ.{func.attr}(): writes the environment")
        elif owner and not match(owner):
            self._add(node.lineno, "monkeypatch", f"{owner}.{func.attr}", f"{owner}.{func.attr}(): changes {owner}")

    def visit_Constant(self, node: ast.Constant) -> None:
        """Strings (not docstrings): huge ones, paths, the grader's files, and the spelling of flagged names."""
        value = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        if not isinstance(value, str) or id(node) in self.quiet:
            return
        shown = repr(value if len(value) <= 40 else value[:37] + "...")
        if len(value) > LONG_STRING:
            self._add(node.lineno, "obfuscation", "long", f"a string constant of {len(value):,} characters")
        for pattern, category, explanation in STRING_PATTERNS:
            if pattern.search(value):
                self._add(node.lineno, category, explanation, f"{shown}: {explanation}")
        if value in STRING_NAMES:
            self._add(node.lineno, STRING_NAMES[value], f"string {value}", f"{shown}: spells a flagged name")
