"""``python -m experiments``: every experiment with its one-line description."""

import ast
from pathlib import Path


def experiments() -> list[tuple[str, str]]:
    """``(module name, first docstring line)`` of every script in this folder."""
    found = []
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        found.append((path.stem, doc.splitlines()[0] if doc else ""))
    return found


if __name__ == "__main__":
    rows = experiments()
    width = max(len(name) for name, _ in rows)
    print("Run one with: python -m experiments.<name> [--help]\n")
    for name, description in rows:
        print(f"  {name:<{width}}  {description}")
