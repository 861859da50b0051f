"""Parse ``.fls`` text into spec objects.

Two steps, kept apart: `parse_tree` runs Lark (LALR, contextual lexer,
grammar in ``grammar/scenario.lark``) and `to_spec` turns the tree into the
frozen objects of `fedarena.core.language.spec`.  `parse` does both.

Every Lark error becomes a `Diagnostic` here and nowhere else.  The parser
does not stop at the first syntax error: it reports it, skips to the next
statement or closing brace (panic-mode recovery on the LALR stack), and
goes on, so that one run of ``fedarena check`` lists every syntax error
it can find.  Brackets nested deeper than `MAX_DEPTH` are refused while
lexing, so no later step can run out of stack.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import threading
from importlib import resources

import attrs
import lark
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.parsers.lalr_analysis import Shift

from fedarena.core.language import spec
from fedarena.core.errors import Diagnostic, ScenarioError, Span

# How deeply lists and calls may nest inside one another.
MAX_DEPTH = 100
# The longest name of a plugin, parameter or setting: a longer one is a
# mistake, and every message that quotes it would be as long.
MAX_NAME = 100
# Syntax errors reported before reading stops.
MAX_ERRORS = 50
# Tokens and characters skipped by error recovery before reading stops: each
# costs about twice a token parsed, and a file that is one long error
# (`) ) ) ...`, 10 MB of it) would otherwise take over a minute to report.
MAX_SKIPPED = 10_000

# How the error messages name each terminal.
TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "EQUAL": "'='", "DOTDOT": "'..'", "DOT": "'.'",
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "PERCENT": "a percentage",
    "STRING": "a string", "$END": "the end of the file",
}
# Groups of terminals that read better as one word in "expected ...".
STATEMENT_TOKENS = frozenset({
    "SEED", "ROUNDS", "DATASET", "SPLIT", "MODEL", "TRAINING", "ATTACK", "DETECTOR", "AGGREGATOR",
    "EVALUATE", "OUTPUT", "START", "SAVE",
})
VALUE_TOKENS = frozenset({"NAME", "INT", "FLOAT", "PERCENT", "STRING", "TRUE", "FALSE", "LSQB", "EVERY"})
SETTING_TOKENS = frozenset({"NAME", "ROUNDS", "CLIENTS"})
PATH_TOKENS = STATEMENT_TOKENS | {"NAME", "SCENARIO", "OVER", "CLIENTS", "EVERY", "TRUE", "FALSE", "SWEEP", "IN",
                                   "FROM", "ROUND", "PRESENT"}
TOKEN_GROUPS = (
    (PATH_TOKENS, "a path"),
    (STATEMENT_TOKENS, "a statement"),
    (VALUE_TOKENS, "a value"),
    (SETTING_TOKENS | {"PRESENT"}, "a setting"),  # in an attack block
    (SETTING_TOKENS, "a setting"),
)
KEYWORDS = PATH_TOKENS - {"NAME"}
IGNORED = frozenset({"WHITESPACE", "COMMENT"})
STRING_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def _word(token_type: str) -> str:
    if token_type in TOKEN_WORDS:
        return TOKEN_WORDS[token_type]
    if token_type.isupper() and token_type.isalpha():
        return f"'{token_type.lower()}'"  # keyword terminals are named after their text
    return token_type


def _one_of(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def expected_words(expected) -> str:
    """``{'RPAR', 'COMMA'}`` -> ``"')' or ','"``; groups read as one word."""
    left = set(expected) - IGNORED
    words = []
    for group, word in TOKEN_GROUPS:
        if group <= left:
            words.append(word)
            left -= group
    words += sorted(_word(t) for t in left)
    return _one_of(words) if words else "nothing more"


def _show(token: Token) -> str:
    text = str(token)
    return "'" + (text if len(text) <= 40 else text[:37] + "...") + "'"


# ---------------------------------------------------------------------------
# Lexing context: comments, nesting depth, recovery state of one parse.


class _TooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


_local = threading.local()


def _context() -> "_ParseRun":
    return _local.run


def _on_comment(token: Token) -> Token:
    _context().comments.append(token)
    return token


def _on_open(token: Token) -> Token:
    run = _context()
    run.depth += 1
    if run.depth > MAX_DEPTH:
        raise _TooDeep(token)
    return token


def _on_close(token: Token) -> Token:
    run = _context()
    run.depth = max(0, run.depth - 1)
    return token


def _on_name(token: Token) -> Token:
    if len(token) > MAX_NAME:
        _context().diagnostics.append(Diagnostic(
            f"the name {_show(token)} is {len(token)} characters long; names have at most {MAX_NAME}",
            _token_span(token)))
    return token


class _Numbers:
    """A pass-through post-lexer whose only use is ``always_accept``: every
    state of the contextual lexer then reads whole numbers, so ``seed 1.5``
    is "unexpected '1.5'; expected an integer", not an error at '.5'."""

    always_accept = ("INT", "FLOAT", "PERCENT")

    def process(self, stream):
        return stream


@functools.lru_cache(maxsize=1)
def parser() -> lark.Lark:
    grammar = resources.files("fedarena.grammar").joinpath("scenario.lark").read_text()
    return lark.Lark(
        grammar, parser="lalr", lexer="contextual", propagate_positions=False, maybe_placeholders=False,
        postlex=_Numbers(),
        lexer_callbacks={"COMMENT": _on_comment, "LPAR": _on_open, "LSQB": _on_open,
                         "RPAR": _on_close, "RSQB": _on_close, "NAME": _on_name},
    )


class _ParseRun:
    """One parse: collects comments and diagnostics, and recovers from
    syntax errors so that parsing can go on."""

    def __init__(self, text: str):
        self.text = text
        self.comments: list[Token] = []
        self.depth = 0
        self.diagnostics: list[Diagnostic] = []
        self._after_recovery = None  # the parser stack right after the last recovery
        self.skipped = 0  # errors met, reported or not

    # Where the text ends: just after its last character that is not blank.
    def end_span(self) -> Span:
        body = self.text.rstrip()
        line = body.count("\n") + 1
        column = len(body) - (body.rfind("\n") + 1) + 1
        return Span(line, column)

    def _first_on_line(self, token: Token) -> bool:
        # Walk back over the blanks just before the token (not the whole
        # line: a long line of errors would make the parse quadratic).
        i = token.start_pos - 1
        while i >= 0 and self.text[i] != "\n" and self.text[i].isspace():
            i -= 1
        return i < 0 or self.text[i] == "\n"

    def _stack_mark(self, state):
        return len(state.state_stack), state.value_stack[-1] if state.value_stack else None

    def _stuck(self, state) -> bool:
        """True while nothing was parsed since the last recovery: a further
        error is then a consequence of the first and is not reported."""
        if self._after_recovery is None:
            return False
        depth, top = self._stack_mark(state)
        return depth == self._after_recovery[0] and top is self._after_recovery[1]

    def on_error(self, error: UnexpectedInput) -> bool:
        """Lark's ``on_error``: report, recover, and say whether to go on."""
        interactive = error.interactive_parser
        state = interactive.parser_state
        stuck = self._stuck(state)
        table = state.parse_conf.parse_table.states

        def boundaries():
            """Stack depths, top first, where a statement may start: inside a
            block's braces, or just after a block was closed."""
            found = []
            for i in range(len(state.state_stack) - 1, -1, -1):
                if i and _is_token(state.value_stack[i - 1], "RBRACE"):
                    found.append(i)
                    break  # never reopen a closed block
                action = table[state.state_stack[i]].get("RBRACE")
                if action is not None and action[0] is Shift:
                    found.append(i)
            return found

        self.skipped += 1
        at_end = isinstance(error, UnexpectedToken) and error.token.type == "$END"
        if self.skipped > MAX_SKIPPED and not at_end:
            self.diagnostics.append(Diagnostic(
                f"the syntax errors go on for more than {MAX_SKIPPED} tokens; the rest of the file was not read",
                Span(error.line, error.column)))
            return False
        if isinstance(error, UnexpectedCharacters):
            if not stuck and len(self.diagnostics) >= MAX_ERRORS:
                self.diagnostics.append(Diagnostic(
                    f"more than {MAX_ERRORS} syntax errors; the rest of the file was not read",
                    Span(error.line, error.column)))
                return False
            if not stuck:
                self.diagnostics.append(_character_diagnostic(error, self.text))
            self._after_recovery = self._stack_mark(state)
            return True  # Lark skips the character
        token = error.token
        if token.type == "$END":
            unclosed = any((table[s].get("RBRACE") or (None,))[0] is Shift for s in state.state_stack)
            if not stuck or unclosed:
                try:
                    expected = interactive.accepts()
                except UnexpectedInput:
                    expected = error.expected
                span = self.end_span()
                message = f"unexpected end of the file; expected {expected_words(expected)}"
                self.diagnostics.append(Diagnostic(message, span))
            return False
        if not stuck:
            if len(self.diagnostics) >= MAX_ERRORS:
                self.diagnostics.append(Diagnostic(
                    f"more than {MAX_ERRORS} syntax errors; the rest of the file was not read",
                    Span(token.line, token.column)))
                return False
            try:
                expected = interactive.accepts()
            except UnexpectedInput:
                expected = error.expected
            self.diagnostics.append(Diagnostic(_token_message(token, expected), Span(token.line, token.column)))
        # Panic mode: leave the broken statement for the innermost block
        # around it.  A statement keyword, a closing brace or the first word
        # of a line starts again there if that block accepts it.  (Where a
        # name may follow, the contextual lexer reads a keyword as a name.)
        if token.type == "NAME" and token.upper() in KEYWORDS:
            token = Token.new_borrow_pos(token.upper(), str(token), token)
        resync = token.type in STATEMENT_TOKENS or token.type in ("RBRACE", "SWEEP") or self._first_on_line(token)
        levels = boundaries()
        target = next((i for i in levels if token.type in table[state.state_stack[i]]), None) if resync else None
        if target is None and levels:
            target = levels[0]
        if target is not None:
            del state.state_stack[target + 1:]
            del state.value_stack[target:]
            self.depth = sum(1 for v in state.value_stack if isinstance(v, Token) and v.type in ("LPAR", "LSQB"))
            if resync and token.type in table[state.position]:
                try:
                    interactive.feed_token(token)
                except UnexpectedToken:
                    pass
        self._after_recovery = self._stack_mark(state)
        return True


def capped(diagnostics: list[Diagnostic], limit: int = 2 * MAX_ERRORS) -> list[Diagnostic]:
    """The first ``limit`` problems in file order, and a note of how many
    more there are at the place of the first left out."""
    if len(diagnostics) <= limit + 1:  # (a list capped before passes as it is)
        return diagnostics
    ordered = sorted(diagnostics, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
    rest = ordered[limit:]
    return ordered[:limit] + [Diagnostic(f"... and {len(rest)} more problems from here on", rest[0].span)]


def _is_token(value, token_type: str) -> bool:
    return isinstance(value, Token) and value.type == token_type


def _token_message(token: Token, expected) -> str:
    expected = set(expected) - IGNORED
    if token.type == "NAME":
        keywords = sorted(t.lower() for t in expected if t.isalpha() and t.isupper() and t != "NAME")
        close = difflib.get_close_matches(str(token), keywords, n=1, cutoff=0.6)
        what = "unknown statement" if STATEMENT_TOKENS <= expected else "unexpected"
        if close:
            return f"{what} {_show(token)}; did you mean '{close[0]}'?"
        return f"{what} {_show(token)}; expected {expected_words(expected)}"
    return f"unexpected {_show(token)}; expected {expected_words(expected)}"


def _character_diagnostic(error: UnexpectedCharacters, text: str) -> Diagnostic:
    span = Span(error.line, error.column)
    char = error.char
    if char == '"':
        end = text.find("\n", error.pos_in_stream)
        rest = text[error.pos_in_stream:end if end >= 0 else len(text)]
        if rest.count('"') == 1:
            return Diagnostic("this string has no closing '\"' on its line", span)
        return Diagnostic("this string holds a control character; write it as an escape such as \\t", span)
    if char == "\ufeff":  # invisible in an editor: say what it is
        return Diagnostic("unexpected byte-order mark (U+FEFF); save the file as UTF-8 without one", span)
    if char in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029":
        return Diagnostic(f"unexpected character {char!r}: lines end with '\\n' only", span)
    return Diagnostic(f"unexpected character {char!r}", span)


def parse_tree(text: str, filename: str = "<scenario>") -> tuple[Tree, list[Token]]:
    """Parse scenario text into a Lark tree, with its comment tokens.

    Raise `ScenarioError` listing every syntax error found."""
    run = _ParseRun(text)
    previous = getattr(_local, "run", None)
    _local.run = run
    tree = None
    try:
        with _no_gc():
            tree = parser().parse(text, on_error=run.on_error)
    except UnexpectedInput as error:  # a last error after which nothing can follow
        if not run.diagnostics:
            run.diagnostics.append(Diagnostic(f"cannot read the scenario: {type(error).__name__}", None))
    except _TooDeep as error:
        run.diagnostics.append(Diagnostic(
            f"lists and calls are nested more than {MAX_DEPTH} deep here", _token_span(error.token)))
    except RecursionError:
        run.diagnostics.append(Diagnostic("the scenario is nested too deeply to read"))
    except Exception as error:  # a bug here must still not end in a traceback for the user
        run.diagnostics.append(Diagnostic(f"cannot read the scenario (internal error {type(error).__name__}: {error})"))
    finally:
        _local.run = previous
    if run.diagnostics or tree is None:
        raise ScenarioError(run.diagnostics or [Diagnostic("cannot read the scenario")], filename, text)
    return tree, run.comments


@contextlib.contextmanager
def _no_gc():
    """Pause the cycle collector: parsing allocates many small objects and
    no cycles, and collections would cost more than half the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _locate(node: Tree) -> None:
    """Give a tree node the place of its text, from its first and last
    tokens (its children are located first).  Done here rather than by
    Lark's ``propagate_positions``, which costs a sixth of the parse."""
    meta = node.meta
    first, last = node.children[0], node.children[-1]
    if isinstance(first, Tree):
        first = first.meta
    if isinstance(last, Tree):
        last = last.meta
    meta.line, meta.column = first.line, first.column
    meta.end_line, meta.end_column = last.end_line, last.end_column
    meta.start_pos, meta.end_pos = first.start_pos, last.end_pos
    meta.empty = False


def _token_span(token: Token) -> Span:
    return Span(token.line, token.column, token.end_line, token.end_column)


def _span(node) -> Span:
    meta = node.meta if isinstance(node, Tree) else node
    return Span(meta.line, meta.column, getattr(meta, "end_line", None), getattr(meta, "end_column", None))


def _place(node) -> Span:
    """Where a child of the tree (a token or a subtree) was written."""
    return _token_span(node) if isinstance(node, Token) else _span(node)


# ---------------------------------------------------------------------------
# Tree -> spec objects.


@attrs.frozen
class _Located:
    """A value with the place it was written (inside the transform only)."""

    value: object
    span: Span


class _Invalid:
    """Stands for a literal that could not be read (its error is recorded)."""

    def __repr__(self) -> str:
        return "<invalid>"


INVALID = _Invalid()


def decode_string(token: str) -> str:
    """The value of a STRING token; raise ValueError on an unknown escape."""
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            escaped = body[i + 1]
            if escaped not in STRING_ESCAPES:
                raise ValueError(f"unknown escape '\\{escaped}' in a string; "
                                 "known: \\\" \\\\ \\n \\t \\r")
            out.append(STRING_ESCAPES[escaped])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class ToSpec:
    """Parse tree -> spec objects; literals become Python values.

    Each rule of the grammar has a method ``rule(node, children)`` called
    with the tree node and its children already transformed (tokens are
    passed as they are).
    The walk is not recursive, so tree depth is never a problem here.
    Literals that cannot be read (an unknown escape, a number too large)
    are collected in ``problems`` and the transform goes on."""

    def __init__(self):
        self.problems: list[Diagnostic] = []

    def transform(self, tree: Tree):
        methods = {}
        order, pending = [], [tree]
        while pending:  # children pushed after their parent: reversed, a post-order
            node = pending.pop()
            order.append(node)
            if isinstance(node, Tree):
                pending.extend(node.children)
        results = []
        for node in reversed(order):
            if isinstance(node, Tree):
                _locate(node)
                size = len(node.children)
                children = results[len(results) - size:] if size else []
                if size:
                    del results[len(results) - size:]
                method = methods.get(node.data)
                if method is None:
                    method = methods[node.data] = getattr(self, node.data)
                results.append(method(node, children))
            else:
                results.append(node)
        (result,) = results
        return result

    def literal(self, item):
        """A child of a rule: tokens become Python values, the rest is kept."""
        if not isinstance(item, Token):
            return item
        try:
            if item.type == "INT":
                return int(item)
            if item.type == "FLOAT":
                value = float(item)
                if value in (float("inf"), float("-inf")):
                    raise ValueError(f"the number {_show(item)} is too large")
                return value
            if item.type == "PERCENT":
                value = float(item[:-1])
                if value in (float("inf"), float("-inf")):
                    raise ValueError(f"the percentage {_show(item)} is too large")
                return spec.Percent(value)
            if item.type == "STRING":
                return decode_string(item)
            if item.type == "TRUE":
                return True
            if item.type == "FALSE":
                return False
        except ValueError as error:
            message = str(error)
            if item.type == "INT" and "digits" in message:
                message = f"the integer {_show(item)} has too many digits"
            self.problems.append(Diagnostic(message, _token_span(item)))
            return INVALID
        return item

    def range(self, node, children):
        start, _, stop = children
        return spec.Range(self.literal(start), self.literal(stop))

    def every(self, node, children):
        return spec.Every(self.literal(children[1]))

    def list(self, node, children):
        return tuple(self.literal(c) for c in children
                     if not (isinstance(c, Token) and c.type in ("LSQB", "RSQB", "COMMA")))

    def arg(self, node, children):
        name, _, value = children
        return spec.Arg(str(name), self.literal(value), _token_span(name), _place(node.children[2]))

    def call(self, node, children):
        name = children[0]
        args = tuple(c for c in children[1:] if isinstance(c, spec.Arg))
        return spec.Call(str(name), args, _token_span(name))

    def setting(self, node, children):
        name, value = children
        return spec.Setting(str(name), self.literal(value), _token_span(name), _place(node.children[1]))

    def _statement(keyword, at):
        def build(self, node, children):
            token = children[at]
            return spec.Statement(keyword, self.literal(token), _span(node),
                                  _token_span(token) if isinstance(token, Token) else token.span)

        return build

    seed_stmt = _statement("seed", 1)
    rounds_stmt = _statement("rounds", 1)
    dataset_stmt = _statement("dataset", 1)
    model_stmt = _statement("model", 1)
    detector_stmt = _statement("detector", 1)
    aggregator_stmt = _statement("aggregator", 1)
    evaluate_stmt = _statement("evaluate", 2)
    save_stmt = _statement("save", 3)
    output_stmt = _statement("output", 1)

    def split_stmt(self, node, children):
        count = children[3]
        return spec.Statement("split", (children[1], self.literal(count)), _span(node), _token_span(count))

    def start_stmt(self, node, children):
        path = children[2]
        number, round_span = None, None
        if len(children) > 3:
            number, round_span = self.literal(children[4]), _token_span(children[4])
        return spec.Statement("start", spec.StartFrom(self.literal(path), number, round_span), _span(node),
                              _token_span(path))

    def present_setting(self, node, children):
        keyword, every, *rest = children
        value = spec.Every(1 if rest[0].type == "ROUND" else self.literal(rest[0]))
        value_span = Span(every.line, every.column, rest[-1].end_line, rest[-1].end_column)
        return spec.Setting("present", value, _token_span(keyword), value_span)

    def training_block(self, node, children):
        settings = tuple(c for c in children if isinstance(c, spec.Setting))
        return spec.Statement("training", settings, _span(node))

    def attack_block(self, node, children):
        call = children[1]
        settings = tuple(c for c in children if isinstance(c, spec.Setting))
        return spec.Statement("attack", spec.AttackBlock(call, settings, call.span), _span(node))

    def scenario(self, node, children):
        title = self.literal(children[1])
        statements = tuple(c for c in children if isinstance(c, spec.Statement))
        return spec.ScenarioSpec(title, statements, span=_span(node))

    def step(self, node, children):
        name = next(c for c in children if isinstance(c, Token) and c.type == "NAME")
        return spec.PathStep(str(name), selector=children[0].type == "LSQB", span=_token_span(name))

    def path(self, node, children):
        return str(children[0]), tuple(children[1:])

    def choices(self, node, children):
        return tuple(_Located(self.literal(value), _place(raw)) for raw, value in zip(node.children, children)
                     if not (isinstance(raw, Token) and raw.type in ("LSQB", "RSQB", "COMMA")))

    def axis(self, node, children):
        (root, steps), _, values = children
        if isinstance(values, spec.Range):
            span = _span(node)
            if isinstance(values.start, int) and isinstance(values.stop, int) and values.stop - values.start < 100_000:
                items = tuple(_Located(v, span) for v in range(values.start, values.stop + 1))
            else:
                self.problems.append(Diagnostic(f"the range {values} is too long for a sweep", span))
                items = ()
        else:
            items = values
        return spec.Axis(str(root), steps, tuple(i.value for i in items), _span(node),
                         tuple(i.span for i in items))

    def sweep(self, node, children):
        return spec.Sweep(tuple(c for c in children if isinstance(c, spec.Axis)), _span(node))

    def start(self, node, children):
        scenario = children[0]
        sweep = children[1] if len(children) > 1 else None
        return attrs.evolve(scenario, sweep=sweep)


def to_spec(tree: Tree, text: str, filename: str = "<scenario>") -> spec.ScenarioSpec:
    """The spec objects of a parse tree; raise `ScenarioError` on literals
    that cannot be read."""
    transformer = ToSpec()
    try:
        with _no_gc():
            scenario = transformer.transform(tree)
    except Exception as error:  # a bug here must still not end in a traceback for the user
        message = f"cannot read the scenario (internal error {type(error).__name__}: {error})"
        raise ScenarioError([Diagnostic(message)], filename, text) from None
    if transformer.problems:
        raise ScenarioError(capped(transformer.problems), filename, text)
    return attrs.evolve(scenario, source=text, filename=filename)


def parse_with_comments(text: str, filename: str = "<scenario>") -> tuple[spec.ScenarioSpec, Tree, list[Token]]:
    tree, comments = parse_tree(text, filename)
    return to_spec(tree, text, filename), tree, comments


def parse(text: str, filename: str = "<scenario>") -> spec.ScenarioSpec:
    """Parse scenario text; raise `ScenarioError` with positions on bad syntax."""
    tree, _ = parse_tree(text, filename)
    return to_spec(tree, text, filename)
