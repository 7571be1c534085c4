"""CALCULATOR handler: safe arithmetic without eval.

``{"expression": "(a + b) * 2", "variables": {"a": 1, "b": "{{ input.b }}"}}``
is parsed with ``ast`` and walked over an allow-list: numbers, variables,
``+ - * / // % **``, unary ``- +``, ``not``/``and``/``or``, comparisons,
``x if c else y``, and the functions abs, min, max, round, floor, ceil, sqrt,
log, log10, exp, pow; the constants pi and e. Every intermediate value is
bounded (integers to ``MAX_INT_BITS`` bits, floats finite) and powers are
checked *before* they are computed, so ``9**9**9`` fails at once.

Named operations: ``{"operation": "add|subtract|multiply|divide|power|modulo",
"a", "b"}`` and ``{"operation": "fibonacci", "n"}``.

Output: ``{"result": number}`` (a boolean for a comparison). Division by zero
and every other bad input: ``NodeError("validation")``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from executions.nodes.base import NodeContext, NodeError, NodeHandler, register
from executions.nodes.condition import guarded, is_number, to_number
from workflows.node_types.calculator import MAX_EXPRESSION_LEN, OPERATIONS

Number = int | float

MAX_INT_BITS = 1024  # about the float range (1.8e308): results stay representable
MAX_NODES = 500
MAX_DEPTH = 50
MAX_FIBONACCI_N = 1000  # fib(1000) has 694 bits
MAX_VARIABLES = 100
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


class _Invalid(Exception):
    """An expression problem; becomes NodeError("validation") with the expression named."""


def _check(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise _Invalid(f"result magnitude exceeds the limit (2**{MAX_INT_BITS})")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("result is not a finite number")
        return value
    raise _Invalid(f"value of type {type(value).__name__} is not a number")


def _num(value: Any) -> Number:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    raise _Invalid(f"value of type {type(value).__name__} is not a number")


def _bits(value: Number) -> float:
    """Approximate log2 of |value| (0 for 0)."""
    if isinstance(value, int):
        return float(value.bit_length())
    return math.log2(abs(value)) if value else 0.0


def _power(a: Any, b: Any) -> Number:
    base, exp = _num(a), _num(b)
    if base == 0 and exp < 0:
        raise _Invalid("division by zero (0 raised to a negative power)")
    if isinstance(base, int) and isinstance(exp, int):
        if exp < 0:
            return _check(float(base) ** exp)
        if abs(base) > 1 and _bits(base) * exp > MAX_INT_BITS + 1:
            raise _Invalid(f"power too large: the result would exceed 2**{MAX_INT_BITS}")
        return _check(base**exp)
    if base < 0 and not float(exp).is_integer():
        raise _Invalid("a negative number to a fractional power is not a real number")
    if abs(base) > 1 and _bits(base) * abs(exp) > 1100 and exp > 0:
        raise _Invalid("power too large: the result is not a finite number")
    try:
        return _check(math.pow(base, exp))
    except (OverflowError, ValueError):
        raise _Invalid("power too large: the result is not a finite number") from None


def _multiply(a: Any, b: Any) -> Number:
    x, y = _num(a), _num(b)
    if isinstance(x, int) and isinstance(y, int) and x and y and _bits(x) + _bits(y) > MAX_INT_BITS + 1:
        raise _Invalid(f"product too large: the result would exceed 2**{MAX_INT_BITS}")
    return _check(x * y)


def _divide(a: Any, b: Any) -> Number:
    x, y = _num(a), _num(b)
    if y == 0:
        raise _Invalid("division by zero")
    try:
        return _check(x / y)
    except OverflowError:
        raise _Invalid("quotient too large") from None


def _floordiv(a: Any, b: Any) -> Number:
    x, y = _num(a), _num(b)
    if y == 0:
        raise _Invalid("division by zero")
    return _check(x // y)


def _modulo(a: Any, b: Any) -> Number:
    x, y = _num(a), _num(b)
    if y == 0:
        raise _Invalid("modulo by zero")
    return _check(x % y)


def _add(a: Any, b: Any) -> Number:
    return _check(_num(a) + _num(b))


def _subtract(a: Any, b: Any) -> Number:
    return _check(_num(a) - _num(b))


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: _add,
    ast.Sub: _subtract,
    ast.Mult: _multiply,
    ast.Div: _divide,
    ast.FloorDiv: _floordiv,
    ast.Mod: _modulo,
    ast.Pow: _power,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _arity(name: str, args: list[Any], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise _Invalid(f"{name}() takes {expected} arguments, got {len(args)}")


def _fn_round(args: list[Any]) -> Number:
    _arity("round", args, 1, 2)
    value = _num(args[0])
    if len(args) == 1:
        return _check(round(value))
    digits = _num(args[1])
    if not isinstance(digits, int) or not -20 <= digits <= 20:
        raise _Invalid("round() digits must be an integer between -20 and 20")
    return _check(round(value, digits))


def _fn_unary(name: str, func: Callable[[Number], Number]) -> Callable[[list[Any]], Number]:
    def call(args: list[Any]) -> Number:
        _arity(name, args, 1, 1)
        try:
            return _check(func(_num(args[0])))
        except ValueError:
            raise _Invalid(f"{name}() is not defined for {args[0]!r}") from None
        except OverflowError:
            raise _Invalid(f"{name}() result is too large") from None

    return call


def _fn_log(args: list[Any]) -> Number:
    _arity("log", args, 1, 2)
    x = _num(args[0])
    if x <= 0:
        raise _Invalid("log() is only defined for positive numbers")
    if len(args) == 1:
        return _check(math.log(x))
    base = _num(args[1])
    if base <= 0 or base == 1:
        raise _Invalid("log() base must be positive and not 1")
    return _check(math.log(x, base))


def _fn_minmax(name: str, pick: Callable[..., Any]) -> Callable[[list[Any]], Number]:
    def call(args: list[Any]) -> Number:
        if not 1 <= len(args) <= 100:
            raise _Invalid(f"{name}() takes 1 to 100 arguments")
        return _check(pick(_num(a) for a in args))

    return call


def _fn_pow(args: list[Any]) -> Number:
    _arity("pow", args, 2, 2)
    return _power(args[0], args[1])


def _fn_abs(args: list[Any]) -> Number:
    _arity("abs", args, 1, 1)
    return _check(abs(_num(args[0])))


FUNCTIONS: dict[str, Callable[[list[Any]], Number]] = {
    "abs": _fn_abs,
    "min": _fn_minmax("min", min),
    "max": _fn_minmax("max", max),
    "round": _fn_round,
    "floor": _fn_unary("floor", math.floor),
    "ceil": _fn_unary("ceil", math.ceil),
    "sqrt": _fn_unary("sqrt", math.sqrt),
    "log": _fn_log,
    "log10": _fn_unary("log10", math.log10),
    "exp": _fn_unary("exp", math.exp),
    "pow": _fn_pow,
}


class _Evaluator:
    def __init__(self, variables: dict[str, Number]) -> None:
        self.variables = variables

    def eval(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _Invalid(f"expression nested deeper than {MAX_DEPTH} levels")
        d = depth + 1
        if isinstance(node, ast.Expression):
            return self.eval(node.body, d)
        if isinstance(node, ast.Constant):
            if is_number(node.value):
                return _check(node.value)
            raise _Invalid(f"only numbers are allowed, not {type(node.value).__name__} literals")
        if isinstance(node, ast.Name):
            if node.id in self.variables:
                return self.variables[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise _Invalid(f"unknown variable {node.id!r}")
        if isinstance(node, ast.BinOp):
            binop = _BINOPS.get(type(node.op))
            if binop is None:
                raise _Invalid(f"operator {type(node.op).__name__} is not allowed")
            return binop(self.eval(node.left, d), self.eval(node.right, d))
        if isinstance(node, ast.UnaryOp):
            value = self.eval(node.operand, d)
            if isinstance(node.op, ast.USub):
                return _check(-_num(value))
            if isinstance(node.op, ast.UAdd):
                return _check(+_num(value))
            if isinstance(node.op, ast.Not):
                return not value
            raise _Invalid(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.Compare):
            left = self.eval(node.left, d)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                cmp = _COMPARE.get(type(op))
                if cmp is None:
                    raise _Invalid(f"comparison {type(op).__name__} is not allowed")
                right = self.eval(comparator, d)
                if not cmp(_num(left), _num(right)):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                result: Any = True
                for value_node in node.values:
                    result = self.eval(value_node, d)
                    if not result:
                        return result
                return result
            result = False
            for value_node in node.values:
                result = self.eval(value_node, d)
                if result:
                    return result
            return result
        if isinstance(node, ast.IfExp):
            return self.eval(node.body, d) if self.eval(node.test, d) else self.eval(node.orelse, d)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else "this call"
                raise _Invalid(f"function {name!r} is not allowed; allowed: {', '.join(sorted(FUNCTIONS))}")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise _Invalid(f"{node.func.id}() takes positional arguments only")
            return FUNCTIONS[node.func.id]([self.eval(a, d) for a in node.args])
        raise _Invalid(f"{type(node).__name__} is not allowed in an expression")


def _variables(raw: Any) -> dict[str, Number]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NodeError("validation", "variables must be an object of numbers")
    if len(raw) > MAX_VARIABLES:
        raise NodeError("validation", f"at most {MAX_VARIABLES} variables are allowed")
    out: dict[str, Number] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name.isidentifier() or len(name) > 64:
            raise NodeError("validation", f"variable name {name!r} is not a valid identifier")
        if isinstance(value, bool):
            out[name] = int(value)
            continue
        number = to_number(value, f"variables/{name}")
        if isinstance(number, int) and number.bit_length() > MAX_INT_BITS:
            raise NodeError(
                "validation",
                f"variables/{name}: magnitude exceeds the limit (2**{MAX_INT_BITS})",
            )
        out[name] = number
    return out


def evaluate_expression(expression: str, variables: dict[str, Number] | None = None) -> Any:
    """Evaluate a calculator expression; NodeError("validation") on anything not allowed."""
    if not isinstance(expression, str) or not expression.strip():
        raise NodeError("validation", "expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION_LEN:
        raise NodeError("validation", f"expression longer than {MAX_EXPRESSION_LEN} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise NodeError("validation", f"expression is not valid: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise NodeError("validation", "expression is too complex to parse") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise NodeError("validation", f"expression has more than {MAX_NODES} parts")
    try:
        return _Evaluator(variables or {}).eval(tree)
    except _Invalid as exc:
        raise NodeError("validation", f"expression {expression[:100]!r}: {exc}") from None
    except (OverflowError, ZeroDivisionError, ValueError, TypeError) as exc:
        raise NodeError(
            "validation",
            f"expression {expression[:100]!r}: {type(exc).__name__}: {exc}",
        ) from None


def fibonacci(n: Any) -> int:
    if isinstance(n, bool):
        raise NodeError("validation", "n must be an integer")
    number = to_number(n, "n")
    if isinstance(number, float):
        if not number.is_integer():
            raise NodeError("validation", "n must be an integer")
        number = int(number)
    if not 0 <= number <= MAX_FIBONACCI_N:
        raise NodeError("validation", f"n must be between 0 and {MAX_FIBONACCI_N}")
    a, b = 0, 1
    for _ in range(number):
        a, b = b, a + b
    return a


_NAMED: dict[str, Callable[[Any, Any], Number]] = {
    "add": _add,
    "subtract": _subtract,
    "multiply": _multiply,
    "divide": _divide,
    "power": _power,
    "modulo": _modulo,
}


def _round_result(result: Any, precision: Any) -> Any:
    if precision is None or isinstance(result, bool):
        return result
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 15:
        raise NodeError("validation", "precision must be an integer between 0 and 15")
    return round(result, precision) if isinstance(result, float) else result


@register
class CalculatorHandler(NodeHandler):
    type = "CALCULATOR"

    @guarded
    def run(self, ctx: NodeContext) -> dict[str, Any]:
        config = ctx.config
        if not isinstance(config, dict):
            raise NodeError("validation", "config must be an object")
        has_expression, has_operation = "expression" in config, "operation" in config
        if has_expression and has_operation:
            raise NodeError("validation", "give either an expression or an operation, not both")
        if has_operation:
            result = self._operation(config)
        elif has_expression:
            expression = config["expression"]
            if is_number(expression) or isinstance(expression, bool):
                # A whole-string template the engine already evaluated.
                result = _check_value(expression)
            else:
                result = evaluate_expression(expression, _variables(config.get("variables")))
        else:
            raise NodeError("validation", "CALCULATOR needs an expression or an operation")
        return {"result": _round_result(result, config.get("precision"))}

    @staticmethod
    def _operation(config: dict[str, Any]) -> Number:
        name = config["operation"]
        if name not in OPERATIONS:
            raise NodeError(
                "validation",
                f"operation must be one of {', '.join(OPERATIONS)}, not {name!r}",
            )
        if name == "fibonacci":
            if "n" not in config:
                raise NodeError("validation", "fibonacci needs n")
            return fibonacci(config["n"])
        for key in ("a", "b"):
            if key not in config:
                raise NodeError("validation", f"{name} needs a and b")
        a = to_number(config["a"], "a") if not isinstance(config["a"], bool) else _bool_number("a")
        b = to_number(config["b"], "b") if not isinstance(config["b"], bool) else _bool_number("b")
        for key, value in (("a", a), ("b", b)):
            if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
                raise NodeError(
                    "validation",
                    f"{key}: magnitude exceeds the limit (2**{MAX_INT_BITS})",
                )
        try:
            return _NAMED[name](a, b)
        except _Invalid as exc:
            raise NodeError("validation", f"{name}: {exc}") from None


def _bool_number(key: str) -> Number:
    raise NodeError("validation", f"{key}: a boolean is not a number")


def _check_value(value: Any) -> Any:
    try:
        return _check(value)
    except _Invalid as exc:
        raise NodeError("validation", f"expression: {exc}") from None
