"""Read a cell without running it: syntax check and framework detection."""

from __future__ import annotations

import ast
import functools

from ..backends import FRAMEWORKS

# top-level import name -> framework
_IMPORTS = {
    "torch": "torch",
    "torchvision": "torch",
    "torchaudio": "torch",
    "lightning": "torch",
    "pytorch_lightning": "torch",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "tf_keras": "tensorflow",
    "sklearn": "sklearn",
}


class CellError(ValueError):
    """The cell cannot be shipped as written."""


def to_python(source: str) -> str:
    """IPython syntax (magics, ``!cmd``) to plain Python, as the engines will run it."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


@functools.lru_cache(maxsize=64)
def parse(source: str) -> ast.Module:
    """Parse the cell as the engines will, or raise CellError naming the line.

    Cached: the same cell is often run many times.  Callers must not mutate the tree.
    """
    code = to_python(source)
    try:
        tree = ast.parse(code, filename="<distribute-cell>")
        compile(tree, "<distribute-cell>", "exec")  # also 'return'/'await' outside a function
    except SyntaxError as e:
        line = (e.text or "").strip()
        where = f"line {e.lineno}" + (f": {line}" if line else "")
        hint = ""
        if "await" in (e.msg or ""):
            hint = "; top-level await does not run on the engines: wrap it in asyncio.run(...)"
        raise CellError(f"syntax error in the cell, {where} ({e.msg}){hint}; nothing was sent") from None
    return tree


def imported_frameworks(tree: ast.Module) -> list[str]:
    """Frameworks the cell imports, in FRAMEWORKS order."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            fw = _IMPORTS.get(name.split(".")[0])
            if fw:
                found.add(fw)
    return [f for f in FRAMEWORKS if f in found]


def detect_framework(tree: ast.Module) -> str | None:
    found = imported_frameworks(tree)
    if len(found) > 1:
        raise CellError(
            f"the cell imports {' and '.join(found)}; say which one to set up with --framework"
        )
    return found[0] if found else None
