"""A small mutation check: does a test fail when a guarded module is subtly wrong?

Each mutant is one simple AST-located edit of the module's source, written in place and
restored in `finally` (also on Ctrl-C / SIGTERM): a comparison flipped, `and`/`or`
swapped, a call statement dropped, an integer constant moved by one, an `if` condition
negated. For each mutant the module's own fast test list (MODULES below) runs with a
timeout; a failing run kills the mutant, a passing one lets it survive.

    .venv/bin/python tests/mutation/run.py books            # <= 40 sampled mutants
    .venv/bin/python tests/mutation/run.py state --all      # every mutant
    .venv/bin/python tests/mutation/run.py audience --seed 3 --limit 20

Not collected by pytest (tests/mutation/conftest.py ignores this file). See docs/mutation.md.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Target:
    """A guarded module: its file, the functions mutated (all when empty), its tests."""

    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


#: module name -> what is mutated and which tests must catch it (fast subsets only).
MODULES: dict[str, Target] = {
    "books": Target(
        "flows/books.py",
        (
            "tests/integration/test_books.py",
            "tests/integration/test_books_refused.py",
            "tests/adversarial/test_21_guarantees.py",
        ),
    ),
    "state": Target(
        "warehouse/state.py",
        (
            "tests/integration/test_state_store.py",
            "tests/integration/test_delivery_ratelimit.py",
            "tests/integration/test_books_refused.py",
        ),
        functions=(
            "move_cursor",
            "cursors",
            "record_delivered",
            "merge_delivered",
            "delivered_among",
            "record_fingerprints",
            "merge_fingerprints",
            "fingerprints",
            "record_rejections",
            "rejections",
            "mark_replayed",
            "rejection_counts",
            "_unique_keys",
            "_staged",
            "_copy_text",
            "_insert_in",
        ),
    ),
    "audience": Target(
        "warehouse/audience.py",
        (
            "tests/unit/test_audience_sql.py",
            "tests/integration/test_audiences.py",
            "tests/adversarial/test_01_audience_writes.py",
        ),
    ),
    "client": Target(
        "connect/client.py",
        (
            "tests/integration/test_delivery.py",
            "tests/integration/test_delivery_faults.py",
            "tests/adversarial/test_21_retry_after.py",
            "tests/adversarial/test_17_3_payload_too_large.py",
            "tests/adversarial/test_17_7_non_connect_200.py",
            "tests/adversarial/test_17_12_duplicates.py",
            "tests/adversarial/test_18_2_api_key_header.py",
        ),
    ),
    "ratelimit": Target(
        "connect/ratelimit.py",
        ("tests/integration/test_delivery_ratelimit.py",),
    ),
}

FLIPPED = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    """Replace source lines `start..end` (1-based, columns `col..end_col`) with `text`."""

    kind: str
    line: int
    col: int
    end_line: int
    end_col: int
    text: str
    original: str


def _segment(lines: list[str], node: ast.AST) -> str:
    return ast.get_source_segment("".join(lines), node) or ""


def _mutant(kind: str, lines: list[str], node: ast.AST, text: str) -> Mutant:
    return Mutant(
        kind,
        node.lineno,
        node.col_offset,
        node.end_lineno or node.lineno,
        node.end_col_offset or 0,
        text,
        _segment(lines, node),
    )


def _in_scope(tree: ast.Module, functions: tuple[str, ...]) -> list[ast.AST]:
    """The roots to walk: the named functions (at any depth), or the whole module."""
    if not functions:
        return [tree]
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in functions
    ]


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        text = first.value if isinstance(first, ast.Expr) else None
        if isinstance(text, ast.Constant) and isinstance(text.value, str):
            out.add(id(first))
    return out


def _is_logging(call: ast.Call) -> bool:
    """`log.info(...)` and the like: dropping one changes no behaviour a test should pin."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in {"log", "logger", "logging"}
    )


def mutants(source: str, functions: tuple[str, ...] = ()) -> list[Mutant]:
    """Every mutant of `source` (limited to `functions` when given), in source order."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    skip = _docstrings(tree)
    found: dict[tuple, Mutant] = {}
    for root in _in_scope(tree, functions):
        for node in ast.walk(root):
            if isinstance(node, ast.Compare) and len(node.ops) == 1:
                flipped = FLIPPED.get(type(node.ops[0]))
                if flipped is not None:
                    new = ast.Compare(node.left, [flipped()], node.comparators)
                    found.setdefault(
                        ("cmp", node.lineno, node.col_offset),
                        _mutant("compare", lines, node, ast.unparse(new)),
                    )
            elif isinstance(node, ast.BoolOp):
                other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
                new = ast.BoolOp(other, node.values)
                found.setdefault(
                    ("bool", node.lineno, node.col_offset),
                    _mutant("and/or", lines, node, f"({ast.unparse(new)})"),
                )
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                if id(node) not in skip and not _is_logging(node.value):
                    found.setdefault(
                        ("call", node.lineno, node.col_offset),
                        _mutant("drop call", lines, node, "pass"),
                    )
            elif (
                isinstance(node, ast.Constant) and type(node.value) is int and id(node) not in skip
            ):
                found.setdefault(
                    ("int", node.lineno, node.col_offset),
                    _mutant("int+1", lines, node, str(node.value + 1)),
                )
            elif isinstance(node, ast.If | ast.While | ast.IfExp):
                test = node.test
                found.setdefault(
                    ("if", test.lineno, test.col_offset),
                    _mutant("negate if", lines, test, f"not ({_segment(lines, test)})"),
                )
    return sorted(found.values(), key=lambda m: (m.line, m.col, m.kind))


def apply(source: str, mutant: Mutant) -> str:
    """`source` with the mutant's span replaced (columns are UTF-8 byte offsets)."""
    lines = source.splitlines(keepends=True)
    first = lines[mutant.line - 1].encode()
    last = lines[mutant.end_line - 1].encode()
    head = first[: mutant.col].decode()
    tail = last[mutant.end_col :].decode()
    replaced = head + mutant.text + tail
    return "".join(lines[: mutant.line - 1]) + replaced + "".join(lines[mutant.end_line :])


def _drop_bytecode(path: Path) -> None:
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink(missing_ok=True)


def run_tests(tests: tuple[str, ...], timeout: float) -> str:
    """`killed`, `survived` or `timeout` (a mutant that hangs the tests counts as caught)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    if result.returncode == 0:
        return "survived"
    if result.returncode in (1,):
        return "killed"
    return f"error {result.returncode}: {result.stdout.strip().splitlines()[-1:]}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:110]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", choices=sorted(MODULES))
    parser.add_argument("--all", action="store_true", help="every mutant, not a sample")
    parser.add_argument("--limit", type=int, default=40, help="sampled mutants (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--only", type=int, nargs="*", help="run these mutant numbers")
    args = parser.parse_args(argv)

    target = MODULES[args.module]
    path = ROOT / target.path
    tests = tuple(t for t in target.tests if (ROOT / t.split("::")[0]).exists())
    original = path.read_text()
    every = mutants(original, target.functions)
    numbered = list(enumerate(every, 1))
    if args.only:
        chosen = [(n, m) for n, m in numbered if n in set(args.only)]
    elif args.all or len(numbered) <= args.limit:
        chosen = numbered
    else:
        chosen = sorted(random.Random(args.seed).sample(numbered, args.limit), key=lambda x: x[0])
    print(f"{target.path}: {len(every)} mutants, running {len(chosen)}; tests: {' '.join(tests)}")
    if args.list:
        for n, m in chosen:
            print(f"#{n} {target.path}:{m.line} {m.kind}: {_one_line(m.original)} -> {m.text}")
        return 0

    def restore(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, restore)
    started = time.monotonic()
    baseline = run_tests(tests, args.timeout)
    if baseline != "survived":
        print(f"the tests do not pass on the unmutated module ({baseline}): nothing to measure")
        return 2
    results: dict[str, list[str]] = {}
    try:
        for n, m in chosen:
            path.write_text(apply(original, m))
            _drop_bytecode(path)
            try:
                outcome = run_tests(tests, args.timeout)
            finally:
                path.write_text(original)
                _drop_bytecode(path)
            line = f"#{n} {target.path}:{m.line} {m.kind}: {_one_line(m.original)} -> {m.text}"
            results.setdefault(outcome, []).append(line)
            print(f"{outcome.upper():9} {line}", flush=True)
    finally:
        path.write_text(original)
        _drop_bytecode(path)
    print(
        f"\n{args.module}: "
        + ", ".join(f"{len(v)} {k}" for k, v in sorted(results.items()))
        + f" ({time.monotonic() - started:.0f} s)"
    )
    for line in results.get("survived", []):
        print(f"  survived {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
