"""Small helpers of the integrity scan (:mod:`autograder.judge.integrity`) on parsed source: no rules here.

What a constant expression spells, the names a scope binds, the ``if __name__ == "__main__":`` guard,
how a node is written, dunder names, and a class reached through one of its instances.
"""

from __future__ import annotations

import ast


def const_str(node: ast.AST | None) -> str | None:
    """The string a constant expression spells (``"_get" + "frame"``, ``"".join(["g", "c"])``), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = const_str(node.left), const_str(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        pieces = [const_str(v) for v in node.values]
        return "".join(pieces) if None not in pieces else None  # type: ignore[arg-type]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], (ast.List, ast.Tuple))
    ):
        sep, pieces = const_str(node.func.value), [const_str(e) for e in node.args[0].elts]
        return sep.join(pieces) if sep is not None and None not in pieces else None  # type: ignore[arg-type]
    return None


def bound_names(node: ast.AST) -> set[str]:
    """Names a function, lambda or module defines in its own scope: parameters, imports, defs and classes.

    Plain assignments do not count, so that ``exec = exec`` (or ``for exec in [exec]``) cannot hide a builtin.
    """
    names: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        names |= {arg.arg for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if arg}
    body = node.body if isinstance(node.body, list) else [node.body]  # type: ignore[attr-defined]
    stack: list[ast.AST] = list(body)
    while stack:
        item = stack.pop()
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            if not isinstance(item, ast.Lambda):
                names.add(item.name)
            continue
        if isinstance(item, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in item.names}
        stack.extend(ast.iter_child_nodes(item))
    return names


def is_main_guard(test: ast.expr) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"``: code under it never runs when the grader imports the file."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and const_str(test.comparators[0]) == "__main__"
    )


def source(node: ast.AST, width: int = 60) -> str:
    """How ``node`` is written, shortened to ``width`` characters for a flag's detail."""
    text = ast.unparse(node)
    return text if len(text) <= width else text[: width - 3] + "..."


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def through_class(node: ast.expr) -> bool:
    """``x.__class__`` or ``type(x)``: a class reached through one of its instances."""
    if isinstance(node, ast.Attribute):
        return node.attr == "__class__"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "type"
        and len(node.args) == 1
    )
