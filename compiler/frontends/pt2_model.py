"""The model JSON of a torch.export `.pt2` archive, checked before torch reads it.

torch turns parts of this JSON into code: node targets into callables it calls while it retraces
the program, symbolic shapes into sympy expressions (`sympify`, i.e. `eval`), and tensor, node
and module names into the Python source torch.fx generates and execs. Each is refused here
unless it is an aten/prims operator, plain arithmetic, or a plain identifier.
"""

from __future__ import annotations

import ast
import keyword
import re

import torch

MAX_EXPRESSION_CHARS = 2_000
MAX_EXPONENT_PRODUCT = 4096  # bounds the integers sympy builds from a**b while parsing

# ---- what a model JSON may call: aten/prims operators and torch's symbolic-int ops ----------
_OPERATOR_TARGET = re.compile(r"torch\.ops\.(aten|prims)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
_SYM_OP_TARGETS = frozenset(
    [f"_operator.{name}" for name in ("eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "mul",
                                      "add", "sub", "floordiv", "mod", "pow", "truediv", "and_",
                                      "or_", "lshift", "rshift")]
    + [f"torch.sym_{name}" for name in ("not", "int", "float", "ite", "max", "min", "sqrt")]
    + ["math.trunc"])
# names torch.fx writes into generated source (placeholders verbatim, module paths in quotes)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
MODULE_PATH = re.compile(r"([A-Za-z0-9_]{1,255}(\.[A-Za-z0-9_]{1,255})*)?")
_NAME_FIELDS = ("name", "as_name")
_NAME_TABLES = ("tensor_values", "sym_int_values", "sym_bool_values", "sym_float_values",
                "custom_obj_values")
_PATH_FIELDS = ("parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name",
                "fqn", "user_input_name")
_REFUSED_ARGUMENTS = {  # argument kinds that carry code or objects mlc cannot import
    "as_operator": "passes a Python callable",
    "as_graph": "holds a subgraph (control flow)",
    "as_custom_obj": "uses a custom (TorchScript) object",
}

# ---- what a symbolic-shape expression may contain -------------------------------------------
# torch writes them with sympy's srepr, e.g. "Add(FloorDiv(Symbol('s0', integer=True),
# Integer(2)), Integer(1))", and reads them back with sympify (eval): only calls of these
# sympy and torch functions, shape symbols, numbers, arithmetic and comparisons pass.
_EXPRESSION_FUNCTIONS = frozenset(
    "Symbol Integer Rational Float Add Mul Pow Max Min Mod Abs floor ceiling sqrt Piecewise "
    "Equality Unequality StrictLessThan LessThan StrictGreaterThan GreaterThan Eq Ne Lt Le Gt "
    "Ge And Or Not FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt "
    "CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv TruncToFloat "
    "TruncToInt RoundToInt RoundDecimal ToFloat Identity IsNonOverlappingAndDenseIndicator "
    "IntInfinity NegativeIntInfinity".split())
_EXPRESSION_CONSTANTS = frozenset("true false oo zoo nan int_oo".split())
_EXPRESSION_KEYWORDS = frozenset(
    "positive negative nonnegative nonpositive integer real finite infinite zero nonzero even "
    "odd rational commutative extended_real extended_positive extended_negative "
    "extended_nonnegative extended_nonpositive precision evaluate".split())
_SYMBOL_NAME = re.compile(r"(s|u|zf|zuf|ps)\d+")
_EXPRESSION_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}|[+-]?\d{1,30}(\.\d{1,30})?"
                                r"(e[+-]?\d{1,4})?")
_POWER_FUNCTIONS = frozenset(["Pow", "PowByNatural", "FloatPow", "LShift"])
_EXPRESSION_NODES = (ast.Expression, ast.Call, ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp,
                     ast.Compare, ast.BoolOp, ast.keyword, ast.Load, ast.operator, ast.unaryop,
                     ast.cmpop, ast.boolop)
_REFUSED_OPERATORS = (ast.BitXor, ast.MatMult, ast.BitAnd, ast.BitOr, ast.LShift, ast.RShift,
                      ast.Is, ast.IsNot, ast.In, ast.NotIn)


class EntryRefused(Exception):
    """One entry is not what torch.export.save writes; carries the entry name and the reason."""

    def __init__(self, entry: str, reason: str):
        super().__init__(reason)
        self.entry, self.reason = entry, reason


def check_model_json(doc, entry: str) -> None:
    """Refuse a model JSON that names a callable other than an aten/prims operator or torch's
    symbolic-int ops, passes callables or subgraphs, has a shape expression that is not plain
    arithmetic (torch parses those with sympy, i.e. `eval`), or a tensor, node or module name
    that is not a plain identifier (torch.fx writes names into the Python source it execs)."""
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
            continue
        if not isinstance(value, dict):
            continue
        for key, reason in _REFUSED_ARGUMENTS.items():
            if key in value:
                raise EntryRefused(entry, f"{reason} ({key}: {str(value[key])[:60]!r})")
        if "target" in value:
            _check_target(value["target"], entry)
        if "expr_str" in value:
            _check_expression(value["expr_str"], entry)
        _check_names(value, entry)
        stack.extend(value.values())


def _check_names(value: dict, entry: str) -> None:
    """Every name in one JSON object of the model: identifiers, or dotted module paths."""
    values = [key for field in _NAME_TABLES if isinstance(value.get(field), dict)
              for key in value[field]]  # graph values: a placeholder "self" clashes too
    names = [value[key] for key in _NAME_FIELDS if isinstance(value.get(key), str)]
    if isinstance(value.get("forward_arg_names"), list):
        names += value["forward_arg_names"]
    for name in names + values:
        if not (isinstance(name, str) and _IDENTIFIER.fullmatch(name)
                and not keyword.iskeyword(name) and not (name == "self" and name in values)):
            raise EntryRefused(entry, f"names a value {str(name)[:60]!r}, which is not a plain "
                                  "identifier")
    paths = [value[key] for key in _PATH_FIELDS if isinstance(value.get(key), str)]
    for path in paths:
        if not MODULE_PATH.fullmatch(path):
            raise EntryRefused(entry, f"names a module path {path[:60]!r}, which is not dotted "
                                  "identifiers")
    ranges = value.get("range_constraints")
    for symbol in ranges if isinstance(ranges, dict) else ():
        if not _SYMBOL_NAME.fullmatch(symbol):
            raise EntryRefused(entry, f"constrains {symbol[:60]!r}, which is not a shape symbol")


def _check_target(target, entry: str) -> None:
    if target in _SYM_OP_TARGETS:
        return
    match = _OPERATOR_TARGET.fullmatch(target) if isinstance(target, str) else None
    if match:
        namespace, op, overload = match.groups()
        packet = getattr(getattr(torch.ops, namespace), op, None)
        if isinstance(getattr(packet, overload, None), torch._ops.OpOverload):
            return
    raise EntryRefused(entry, f"calls {str(target)[:80]!r}, which is not an aten or prims operator")


def _check_expression(text, entry: str) -> None:
    """A symbolic shape must be arithmetic over shape symbols, numbers and sympy functions."""
    where = f"has the shape expression {str(text)[:60]!r}"
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION_CHARS:
        raise EntryRefused(entry, f"{where}, which is not a shape expression")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise EntryRefused(entry, f"{where}, which is not a shape expression") from None
    exponents = 1
    for node in ast.walk(tree):
        problem = _expression_problem(node)
        if problem:
            raise EntryRefused(entry, f"{where}: {problem}")
        exponents *= _exponent(node)
    if exponents > MAX_EXPONENT_PRODUCT:
        raise EntryRefused(entry, f"{where}: powers too large to evaluate")


def _expression_problem(node: ast.AST) -> str | None:
    """Why one AST node cannot be part of a shape expression (None when it can)."""
    if not isinstance(node, _EXPRESSION_NODES) or isinstance(node, _REFUSED_OPERATORS):
        return f"{type(node).__name__} is not arithmetic"
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in _EXPRESSION_FUNCTIONS):
            return f"{ast.unparse(node.func)[:40]!r} is not a sympy function torch writes"
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            return "argument unpacking is not arithmetic"
    elif isinstance(node, ast.keyword):
        if node.arg is None:
            return "argument unpacking is not arithmetic"
        if node.arg not in _EXPRESSION_KEYWORDS:
            return f"keyword {node.arg!r} is not a sympy assumption"
    elif isinstance(node, ast.Name):
        if not (node.id in _EXPRESSION_FUNCTIONS or node.id in _EXPRESSION_CONSTANTS
                or _SYMBOL_NAME.fullmatch(node.id)):
            return f"{node.id!r} is not a shape symbol or function"
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str) and not _EXPRESSION_STRING.fullmatch(value):
            return f"the string {value[:40]!r} is not a symbol name or number"
        if not isinstance(value, (str, int, float)) or (isinstance(value, int)
                                                        and abs(value) > 2**63):
            return f"the constant {str(value)[:40]!r} is not a shape number"
    return None


def _exponent(node: ast.AST) -> int:
    """How much a power (or left shift) node can multiply the size of the numbers it makes."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        power = node.right
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
          and node.func.id in _POWER_FUNCTIONS and len(node.args) == 2):
        power = node.args[1]
    else:
        return 1
    if isinstance(power, ast.Call) and len(power.args) == 1:  # Integer(5)
        power = power.args[0]
    if isinstance(power, ast.UnaryOp):
        power = power.operand
    if isinstance(power, ast.Constant) and isinstance(power.value, (int, float)):
        return max(1, min(int(abs(power.value)), MAX_EXPONENT_PRODUCT + 1))
    return 1  # a symbolic exponent stays a sympy expression; nothing is computed
