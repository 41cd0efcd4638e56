"""QA band bit tests (`QAExpression`): a tiny expression language parsed with Python's `ast`, never evaluated."""

from __future__ import annotations

import ast
import re
from typing import NoReturn

import numpy as np

from ..errors import InputError

# --- QA expressions ----------------------------------------------------------------------------------------------

QA_EXAMPLES = ("e.g. 'bits(14, 15) == 3' (Landsat-8 Collection-1 BQA high-confidence cloud) or "
               "'qa in (8, 9, 10)' (Sentinel-2 SCL cloud classes)")
_BINOPS: dict[type[ast.operator], np.ufunc] = {
    ast.BitAnd: np.bitwise_and, ast.BitOr: np.bitwise_or, ast.BitXor: np.bitwise_xor,
    ast.LShift: np.left_shift, ast.RShift: np.right_shift}
_CMPOPS: dict[type[ast.cmpop], np.ufunc] = {
    ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
    ast.Gt: np.greater, ast.GtE: np.greater_equal}
_FUNCS = {"bits": 2, "bit": 1}
_MAX_LEN = 1000


class QAExpression:
    """A bit test on a QA band's integer values, parsed safely (Python's `ast`, a whitelist, never eval).

    The QA value is `qa`; `bit(n)` is its bit n (0 or 1), `bits(lo, hi)` the
    value of bits lo..hi inclusive (bits(14, 15) is 0..3). Allowed: integer
    literals (12, 0x0C, 0b1100), & | ^ ~ >> <<, comparisons == != < <= > >=
    (chained: 1 <= bits(5, 6) < 3), `in (a, b, ...)` / `not in (...)`,
    and / or / not, parentheses. An integer result means "non-zero".

    Precedence is Python's, not C's: shifts, then &, then ^, then |, then
    comparisons, then not, and, or. So "(qa >> 3) & 1 == 1" and "qa & 8 == 8"
    test bit 3 as meant, and "bit(4) or bits(14, 15) >= 2" needs no brackets.
    `~` is bitwise (on integers); negate a test with `not`.
    """

    def __init__(self, text: str):
        self.text = text if isinstance(text, str) else str(text)
        stripped = self.text.strip()
        if not stripped:
            self._fail("it is empty; write a test on the QA band value qa")
        if len(stripped) > _MAX_LEN:
            self._fail(f"it is longer than {_MAX_LEN} characters")
        try:
            tree = ast.parse(stripped, mode="eval")
        except SyntaxError as exc:
            col = exc.offset or 0
            hint = "; compare with ==, not =" if re.search(r"(?<![=!<>])=(?!=)", stripped) else ""
            self._fail(f"syntax error ({exc.msg}) at column {col}: {stripped[max(col - 1, 0):][:20]!r}{hint}")
        except (RecursionError, MemoryError, ValueError):
            self._fail("it is nested too deeply")
        self._source = stripped
        self._uses_qa = False
        try:
            self._check(tree.body)
        except RecursionError:
            self._fail("it is nested too deeply")
        if not self._uses_qa:
            self._fail("it never reads the QA value (use qa, bit(n) or bits(lo, hi))")
        self.tree = tree.body

    def __repr__(self) -> str:
        return f"QAExpression({self.text!r})"

    def _fail(self, problem: str, node: ast.expr | None = None) -> NoReturn:
        where = ""
        if node is not None:
            segment = ast.get_source_segment(self._source, node) or ""
            where = f" at column {node.col_offset + 1} ({segment[:40]!r})"
        raise InputError(f"QA expression {self.text!r} cannot be used: {problem}{where}; write a test on the "
                         f"QA value qa with bit(n), bits(lo, hi), integers, & | ^ ~ >> <<, comparisons, in, "
                         f"and/or/not, {QA_EXAMPLES}")

    def _check(self, node: ast.expr) -> None:
        """Raise InputError unless every node is on the whitelist."""
        if isinstance(node, ast.Constant):
            self._literal(node)
        elif isinstance(node, ast.Name):
            if node.id != "qa":
                self._fail(f"unknown name {node.id!r} (the QA value is qa)", node)
            self._uses_qa = True
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                self._fail("only the bit operators & | ^ ~ >> << are allowed, not arithmetic", node)
            # a shift by a computed amount (1 << qa) has no meaning past 63 bits, and numpy's differs by platform
            if isinstance(node.op, (ast.LShift, ast.RShift)) and not (
                    isinstance(node.right, ast.Constant) and type(node.right.value) is int
                    and 0 <= node.right.value < 63):
                self._fail("shifts must be by a number of bits 0 to 62 written as an integer, e.g. qa >> 14", node)
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Invert, ast.Not)):
                self._fail("negative numbers and unary + / - are not allowed", node)
            if isinstance(node.op, ast.Invert) and _is_test(node.operand):
                self._fail("~ flips the bits of an integer; negate a test with not", node)
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare):
            self._check(node.left)
            for i, (op, right) in enumerate(zip(node.ops, node.comparators, strict=True)):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(right, (ast.Tuple, ast.List, ast.Set)) or not right.elts:
                        self._fail("'in' needs a bracketed list of integers, e.g. qa in (8, 9, 10)", right)
                    if i < len(node.ops) - 1:  # the list would be compared next: (8, 9) < 3
                        self._fail("a list after 'in' must end the comparison; join tests with and", node)
                    for element in right.elts:
                        if not isinstance(element, ast.Constant):
                            self._fail("the list after 'in' may hold only integer literals", element)
                        self._literal(element)
                elif type(op) in _CMPOPS:
                    self._check(right)
                else:
                    self._fail("only == != < <= > >= and in / not in compare values ('is' is not allowed)", node)
        elif isinstance(node, ast.Call):
            self._check_call(node)
        elif isinstance(node, ast.Attribute):
            self._fail("attribute access is not allowed", node)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            self._fail("a list is only allowed after 'in'", node)
        elif isinstance(node, ast.Lambda):
            self._fail("lambdas are not allowed", node)
        else:
            self._fail(f"{type(node).__name__.lower()} expressions are not allowed", node)

    def _literal(self, node: ast.Constant) -> int:
        """The value of an integer literal; InputError for any other literal."""
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            kind = {bool: "booleans", float: "decimal numbers", str: "strings"}.get(type(value), "this literal")
            self._fail(f"{kind} are not allowed, only integers (QA values are integer flags)", node)
        if not 0 <= value < 2 ** 63:
            self._fail("integers must be between 0 and 2**63 - 1", node)
        return value

    def _check_call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCS:
            self._fail("the only functions are bit(n) and bits(lo, hi)", node)
        if node.keywords or len(node.args) != _FUNCS[name]:
            self._fail(f"{name} takes {_FUNCS[name]} integer argument(s): "
                       f"{'bit(n)' if name == 'bit' else 'bits(lo, hi)'}", node)
        values: list[int] = []
        for arg in node.args:
            if not isinstance(arg, ast.Constant):
                self._fail(f"the arguments of {name} must be integer literals", arg)
            value = self._literal(arg)
            if value > 62:
                self._fail("bit numbers go from 0 to 62", arg)
            values.append(value)
        if name == "bits" and values[0] > values[1]:
            self._fail("bits(lo, hi) takes the lowest bit first, e.g. bits(14, 15)", node)
        self._uses_qa = True

    def evaluate(self, qa: np.ndarray) -> np.ndarray:
        """Boolean array of `qa`'s shape: where the expression holds."""
        qa = np.asarray(qa)
        result = self._eval(self.tree, qa.astype(np.int64, copy=False))
        return np.broadcast_to(_truth(result), qa.shape).copy()

    def _eval(self, node: ast.expr, qa: np.ndarray):
        if isinstance(node, ast.Constant):
            return np.int64(_int(node))
        if isinstance(node, ast.Name):
            return qa
        if isinstance(node, ast.Call):
            lo = _int(node.args[0])
            hi = _int(node.args[-1])
            return (qa >> lo) & ((1 << (hi - lo + 1)) - 1)
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, qa), self._eval(node.right, qa)
            if _is_bool(left) and _is_bool(right) and type(node.op) in (ast.BitAnd, ast.BitOr, ast.BitXor):
                return _BINOPS[type(node.op)](left, right)
            return _BINOPS[type(node.op)](_as_int(left), _as_int(right))
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, qa)
            if isinstance(node.op, ast.Not):
                return ~_truth(operand)
            if _is_bool(operand):
                self._fail("~ flips the bits of an integer; negate a test with not", node)
            return ~operand
        if isinstance(node, ast.BoolOp):
            values = [_truth(self._eval(v, qa)) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = values[0]
            for v in values[1:]:
                out = combine(out, v)
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, qa)
            result: np.ndarray | None = None
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.In, ast.NotIn)):
                    # _check admits only these
                    assert isinstance(right_node, (ast.Tuple, ast.List, ast.Set))  # nosec B101  # type narrowing
                    members = np.array([_int(e) for e in right_node.elts], np.int64)
                    test = np.isin(_as_int(left), members, invert=isinstance(op, ast.NotIn))
                    right = None
                else:
                    right = self._eval(right_node, qa)
                    test = _CMPOPS[type(op)](_as_int(left), _as_int(right))
                result = test if result is None else result & test
                left = right
            return result
        raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else


def _int(node: ast.expr) -> int:
    """The value of an integer literal that `_check` admitted."""
    assert isinstance(node, ast.Constant) and isinstance(node.value, int)  # nosec B101  # type narrowing, _check ran
    return node.value


def _is_test(node: ast.expr) -> bool:
    """Whether an admitted node's value is a test (true/false) rather than an integer: comparisons,
    and/or/not, and & | ^ of two tests, as `QAExpression._eval` computes them."""
    if isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return True
    if isinstance(node, ast.UnaryOp):  # ~ of an integer
        return False
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
        return _is_test(node.left) and _is_test(node.right)
    return False


def _is_bool(x) -> bool:
    return np.asarray(x).dtype == bool


def _as_int(x):
    return np.asarray(x).astype(np.int64) if _is_bool(x) else x


def _truth(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype == bool else x != 0
