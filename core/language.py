"""Parse ``.fls`` text into spec objects.

Parsing (Lark, LALR, grammar in ``grammar/scenario.lark``) and transforming
(tree -> `fedarena.core.spec` objects) are separate steps.  Every Lark error
is turned into a `ScenarioError` here and nowhere else.
"""

from __future__ import annotations

import ast
import functools
from importlib import resources

import lark
from lark import Token, Transformer, v_args

from fedarena.core import spec
from fedarena.core.errors import Diagnostic, ScenarioError, Span

# How the error messages name each terminal.
TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "EQUAL": "'='", "DOTDOT": "'..'",
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "PERCENT": "a percentage",
    "STRING": "a string", "TRUE": "'true'", "FALSE": "'false'", "$END": "the end of the file",
}


def _word(token_type: str) -> str:
    if token_type in TOKEN_WORDS:
        return TOKEN_WORDS[token_type]
    if token_type.isupper() and token_type.isalpha():
        return f"'{token_type.lower()}'"  # keyword terminals are named after their text
    return token_type


@functools.lru_cache(maxsize=1)
def parser() -> lark.Lark:
    grammar = resources.files("fedarena.grammar").joinpath("scenario.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _span(meta_or_token) -> Span:
    return Span(
        meta_or_token.line,
        meta_or_token.column,
        getattr(meta_or_token, "end_line", None),
        getattr(meta_or_token, "end_column", None),
    )


def _string(token: Token) -> str:
    return ast.literal_eval(token)  # a STRING token is a valid Python string literal


@v_args(meta=True)
class ToSpec(Transformer):
    """Parse tree -> spec objects; literals become Python values."""

    def INT(self, token):  # noqa: N802 - Lark calls terminals by name
        return int(token)

    def FLOAT(self, token):  # noqa: N802
        return float(token)

    def PERCENT(self, token):  # noqa: N802
        return spec.Percent(float(token[:-1]))

    def STRING(self, token):  # noqa: N802
        return _string(token)

    def TRUE(self, token):  # noqa: N802
        return True

    def FALSE(self, token):  # noqa: N802
        return False

    def range(self, meta, children):
        start, _, stop = children
        return spec.Range(start, stop)

    def every(self, meta, children):
        return spec.Every(children[1])

    def list(self, meta, children):
        return tuple(c for c in children if not isinstance(c, Token))

    def arg(self, meta, children):
        name, _, value = children
        return spec.Arg(str(name), value, _span(name))

    def call(self, meta, children):
        name = children[0]
        args = tuple(c for c in children[1:] if isinstance(c, spec.Arg))
        return spec.Call(str(name), args, _span(name))

    def setting(self, meta, children):
        name, value = children
        return spec.Setting(str(name), value, _span(name))

    def _statement(keyword, pick):
        def build(self, meta, children):
            return spec.Statement(keyword, pick(children), _span(meta))

        return build

    seed_stmt = _statement("seed", lambda c: c[1])
    rounds_stmt = _statement("rounds", lambda c: c[1])
    dataset_stmt = _statement("dataset", lambda c: c[1])
    split_stmt = _statement("split", lambda c: (c[1], c[3]))
    model_stmt = _statement("model", lambda c: c[1])
    detector_stmt = _statement("detector", lambda c: c[1])
    aggregator_stmt = _statement("aggregator", lambda c: c[1])
    evaluate_stmt = _statement("evaluate", lambda c: c[2])
    output_stmt = _statement("output", lambda c: c[1])
    training_block = _statement("training", lambda c: tuple(x for x in c if isinstance(x, spec.Setting)))

    def attack_block(self, meta, children):
        call = children[1]
        settings = tuple(c for c in children if isinstance(c, spec.Setting))
        return spec.Statement("attack", spec.AttackBlock(call, settings, call.span), _span(meta))

    def scenario(self, meta, children):
        title = children[1]
        statements = tuple(c for c in children if isinstance(c, spec.Statement))
        return spec.ScenarioSpec(title, statements, span=_span(meta))

    def start(self, meta, children):
        return children[0]


def _syntax_diagnostic(error: lark.exceptions.LarkError) -> Diagnostic:
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        expected = sorted({_word(t) for t in error.accepts or error.expected})
        found = "the end of the file" if token.type == "$END" else f"'{token}'"
        message = f"unexpected {found}; expected {', '.join(expected[:8])}"
        if len(expected) > 8:
            message += ", ..."
        line, column = error.line, error.column
        if token.type == "$END":
            line, column = max(error.line, 1), max(error.column, 1)
        return Diagnostic(message, Span(line, column))
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        char = error.char
        return Diagnostic(f"unexpected character {char!r}", Span(error.line, error.column))
    if isinstance(error, lark.exceptions.UnexpectedEOF):
        return Diagnostic("unexpected end of the file", None)
    return Diagnostic(str(error), None)


def parse(text: str, filename: str = "<scenario>") -> spec.ScenarioSpec:
    """Parse scenario text; raise `ScenarioError` with positions on bad syntax."""
    try:
        tree = parser().parse(text)
    except lark.exceptions.UnexpectedInput as error:
        if isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type == "$END":
            # Lark puts end-of-input at line -1; point at the last character.
            lines = text.splitlines() or [""]
            error.line, error.column = len(lines), len(lines[-1]) + 1
        raise ScenarioError([_syntax_diagnostic(error)], filename, text) from None
    except RecursionError:
        raise ScenarioError([Diagnostic("the scenario is nested too deeply to read")], filename, text) from None
    try:
        scenario = ToSpec().transform(tree)
    except lark.exceptions.VisitError as error:
        raise ScenarioError([Diagnostic(str(error.orig_exc))], filename, text) from None
    return spec.ScenarioSpec(scenario.title, scenario.statements, text, filename, scenario.span)
