"""Names of the integrity scan (:mod:`autograder.judge.integrity`), resolved through imports and aliases.

:class:`Resolver` resolves every name of a parsed file through its imports and aliases (``import
sys as s``, ``from sys import _getframe as g``, ``getattr(sys, "_getframe")``, ``__import__("gc")``,
``importlib.import_module("ctypes")``, ``sys.modules["gc"]``, ``vars(sys)["_getframe"]``,
``g = sys._getframe``) to a dotted name, for :mod:`.scan` to apply the rules to. Aliases are
collected for the whole file at once, not statement by statement: that errs towards flagging, which
suits a report for TAs. A builtin (``exit``, ``exec``) counts unless its name is rebound in the
module or an enclosing function.
"""

from __future__ import annotations

import ast
import builtins

from .names import match
from .syntax import bound_names, const_str

_BUILTINS = frozenset(dir(builtins))
IMPORTERS = frozenset({"builtins.__import__", "importlib.__import__", "importlib.import_module"})
Resolved = tuple[str, "str | None"]  # (dotted name, the import that bound its root; "" for a bare builtin)


class Resolver:
    """The aliases of one parsed file, and the dotted name each expression of it stands for."""

    def __init__(self) -> None:
        self.aliases: dict[str, Resolved] = {}
        self.stars: list[str] = []  # modules imported with ``from m import *``
        self.scopes: list[set[str]] = []  # names bound by the module and each enclosing function
        self.memo: dict[int, Resolved | None] | None = None  # resolutions, once the aliases are final

    def bind(self, tree: ast.Module) -> None:
        """Collect the aliases of ``tree``, twice (so that an alias of an alias resolves); then memoise resolutions."""
        self.scopes = [bound_names(tree)]
        for _ in range(2):
            self._bind_all(tree)
        self.memo = {}

    def _bind_all(self, tree: ast.Module) -> None:
        """Collect the aliases of the whole file: imports, ``x = <a resolvable name>``, parameter defaults."""
        for node in ast.walk(tree):
            try:
                self._bind_node(node)
            except RecursionError:
                pass  # a chain too deep to resolve: the visit flags it

    def _bind_node(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.name if alias.asname else alias.name.split(".")[0]
                self.aliases[alias.asname or bound] = (bound, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                full = module + ("" if module.endswith(".") else ".") + alias.name
                if alias.name != "*":
                    self.aliases[alias.asname or alias.name] = (full, full)
                elif module not in self.stars:
                    self.stars.append(module)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                self._bind(target, node.value)
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            pairs = [
                *zip(positional[len(positional) - len(node.defaults) :], node.defaults),
                *zip(node.kwonlyargs, node.kw_defaults),
            ]
            for arg, default in pairs:
                if default is not None:
                    self._bind(ast.Name(arg.arg), default)

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        """``target = value``: ``target`` now stands for what ``value`` resolves to (pairwise for tuples)."""
        if isinstance(target, ast.Name):
            resolved = self.resolve(value)
            if resolved:
                self.aliases[target.id] = resolved
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)):
            for t, v in zip(target.elts, value.elts):
                self._bind(t, v)

    def resolve(self, node: ast.AST) -> Resolved | None:
        """The dotted name ``node`` stands for and the import that bound its root, or None when unknown."""
        if self.memo is None:
            return self._lookup(node)
        if id(node) not in self.memo:
            self.memo[id(node)] = self._lookup(node)
        return self.memo[id(node)]

    def _lookup(self, node: ast.AST) -> Resolved | None:
        if isinstance(node, ast.Name):
            return self._resolve_name(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return (f"{base[0]}.{node.attr}", base[1]) if base else None
        if isinstance(node, ast.Subscript):
            key, space = const_str(node.slice), self._namespace(node.value)
            return (f"{space[0]}.{key}" if space[0] else key, space[1]) if key and space else None
        if isinstance(node, ast.Call):
            return self._resolve_call(node)
        return None

    def _resolve_name(self, name: str) -> Resolved | None:
        """An alias, a flagged name from a ``*`` import, or a builtin not defined in scope."""
        if name in self.aliases:
            return self.aliases[name]
        for module in self.stars:
            if match(f"{module}.{name}"):
                return f"{module}.{name}", module
        if name in _BUILTINS and not any(name in scope for scope in self.scopes):
            return f"builtins.{name}", ""
        return None

    def _namespace(self, node: ast.expr) -> Resolved | None:
        """What a subscript of ``node`` looks up: modules (``sys.modules``), m's names (``m.__dict__``, ``vars(m)``)."""
        resolved = self.resolve(node)
        if resolved and resolved[0] == "sys.modules":
            return "", None
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            return self.resolve(node.value)
        if isinstance(node, ast.Call) and len(node.args) == 1 and self.called(node) == "builtins.vars":
            return self.resolve(node.args[0])
        return None

    def _resolve_call(self, node: ast.Call) -> Resolved | None:
        """``getattr(m, "name")``, ``__import__("m")`` and ``importlib.import_module("m")`` as dotted names."""
        func = self.called(node)
        if func == "builtins.getattr" and len(node.args) >= 2:
            base, attr = self.resolve(node.args[0]), const_str(node.args[1])
            return (f"{base[0]}.{attr}", base[1]) if base and attr else None
        module = const_str(node.args[0]) if node.args else None
        if module and func == "importlib.import_module":
            return module, module
        if module and func in IMPORTERS:
            fromlist = len(node.args) >= 4 or any(k.arg == "fromlist" for k in node.keywords)
            return (module if fromlist else module.split(".")[0]), module
        return None

    def called(self, node: ast.Call) -> str | None:
        """The dotted name of the function ``node`` calls, or None when unknown."""
        resolved = self.resolve(node.func)
        return resolved[0] if resolved else None

    def imported(self, node: ast.expr) -> str | None:
        """The dotted name of ``node`` when it is (part of) something imported, not a bare builtin like ``map``."""
        resolved = self.resolve(node)
        return resolved[0] if resolved and resolved[1] != "" else None
