"""How long the parser takes on a one-megabyte scenario (processor time,
median of 5), against reading the same text as JSON-like tokens with a
plain regular expression in the same run, as a baseline of the machine.

    uv run --locked python benchmarks/parse_speed.py
"""

from __future__ import annotations

import re
import statistics
import time

from fedarena.core.language.parser import parse

BLOCK = (
    "\n  attack label_flip(source = 7, target = 1, mode = \"targeted\", poison_ratio = 0.5) {  # a comment\n"
    "    clients 4\n    rounds 5..50\n  }\n"
    '  detector foo(a = [1, 2, 3], b = bar(c = 0.5, d = "x"))\n'
)
HEAD = 'scenario "big" {\n  rounds 50\n  dataset digits\n  split iid over 100 clients\n  model mlp\n'


def _cpu_seconds(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        function()
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    text = HEAD + BLOCK * ((1_000_000 - len(HEAD)) // len(BLOCK)) + "}\n"
    parse('scenario "warm" { }')  # build the parser first
    tokens = re.compile(r'"[^"]*"|[A-Za-z_]\w*|\d+(?:\.\d+)?|\S')
    baseline = _cpu_seconds(lambda: tokens.findall(text))
    parsed = _cpu_seconds(lambda: parse(text, "big.fls"))
    print(f"1 MB scenario ({len(text):,} characters): parse {parsed:.2f} s, regex tokenising {baseline:.3f} s, "
          f"ratio {parsed / baseline:.0f}x (processor time, median of 5)")


if __name__ == "__main__":
    main()
