"""Bad scenario files through ``fedarena check`` and ``fedarena run``.

Empty, binary and wrongly encoded files, 10 MB files, nesting 100,000
deep, unknown plugins and parameters, wrong types and out-of-range values:
each exits 2 with its exact message (``file:line:col``, the line, a caret;
``error: ...`` for a file that cannot be read as text), no traceback, and
no results file or folder created.  The commands run in this process
(`main`), where a stray exception would fail the test with its traceback
and Python's stack is deeper than a user's; one subprocess runs every
file-shaped case at once, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fedarena.core.cli.main import main
from fedarena.core.plugin.registry import default_registry

TEN_MB = 10 * 2**20
DEEP = 100_000  # brackets or calls opened inside one another

VALID = """\
scenario "bad" {
  rounds 2
  dataset synthetic(samples = 200, features = 4, classes = 2)
  split iid over 10 clients
  model mlp(hidden = [8])
  training {
    clients_per_round 5
    optimizer sgd(learning_rate = 0.1)
  }
  attack label_flip(source = 1, target = 0) {
    clients 2
  }
  aggregator fedavg
  output "out.h5"
}
"""


def edited(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# A line of comment, and enough of them to bring VALID to 10 MB.
PAD = "# " + "padding " * 12 + "\n"
PADDING = PAD * ((TEN_MB - len(VALID)) // len(PAD))
PAD_LINES = PADDING.count("\n")  # the scenario's line numbers move down by this much

DEEP_LIST_LINE = "  model mlp(hidden = " + "[" * DEEP + "8" + "]" * DEEP + ")"
CALL = "bucketing(inner = "
DEEP_CALL_LINE = "  aggregator " + CALL * DEEP + "fedavg" + ")" * DEEP


def _window(text: str) -> str:
    """How a message shows a part of a line longer than 160 characters."""
    return "    ..." + text + "..."


# name -> (file contents, the report with {path} for the file's path).
# Windows of long lines start 80 characters before the column and show 160.
FILES = {
    "empty": (b"", "{path}:1:1: unexpected end of the file; expected 'scenario'\n    \n    ^"),
    "blank": (b"\n  \n\t\n", "{path}:1:1: unexpected end of the file; expected 'scenario'\n    \n    ^"),
    "binary_png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
                   "error: {path}: not a UTF-8 text file (invalid start byte at byte 0)"),
    "utf16": (VALID.encode("utf-16"), "error: {path}: not a UTF-8 text file (invalid start byte at byte 0)"),
    "latin1": (edited('"bad"', '"caf\xe9"').encode("latin-1"),
               "error: {path}: not a UTF-8 text file (invalid continuation byte at byte 13)"),
    "utf8_bom": (b"\xef\xbb\xbf" + VALID.encode(),
                 "{path}:1:1: unexpected byte-order mark (U+FEFF); save the file as UTF-8 without one\n"
                 '    \ufeffscenario "bad" {\n    ^'),
    "nul_character": (edited("rounds 2", "rounds 2\x00").encode(),
                      "{path}:2:11: unexpected character '\\x00'\n      rounds 2\x00\n              ^"),
    "10mb_of_comments_then_an_unknown_plugin": (
        (PADDING + edited("aggregator fedavg", "aggregator fedavgg")).encode(),
        f"{{path}}:{PAD_LINES + 13}:14: unknown aggregator 'fedavgg'; did you mean 'fedavg'?\n"
        "      aggregator fedavgg\n                 ^"),
    "10mb_of_one_character": (
        b"@" * TEN_MB,
        "{path}:1:1: unexpected character '@'\n    " + "@" * 160 + "...\n    ^\n"
        "{path}:1:10001: the syntax errors go on for more than 10000 tokens; the rest of the file was not read\n"
        + _window("@" * 160) + "\n" + " " * 87 + "^"),
    "10mb_of_lines_before_the_scenario": (
        b"x = 1\n" * (TEN_MB // 6),
        # every token is an error: x = 1 is three, so the 10,001st is the '=' of line 3334.
        "{path}:1:1: unexpected 'x'; expected 'scenario'\n    x = 1\n    ^\n"
        "{path}:3334:3: the syntax errors go on for more than 10000 tokens; the rest of the file was not read\n"
        "    x = 1\n      ^"),
    "lists_nested_100000_deep": (
        edited("  model mlp(hidden = [8])", DEEP_LIST_LINE).encode(),
        # mlp( is the first level: the 100th '[' (column 21 + 100) is the 101st.
        "{path}:5:121: lists and calls are nested more than 100 deep here\n"
        + _window("[" * 160) + "\n" + " " * 87 + "^"),
    "lists_opened_100000_deep_never_closed": (
        edited("  model mlp(hidden = [8])", "  model mlp(hidden = " + "[" * DEEP).encode(),
        "{path}:5:121: lists and calls are nested more than 100 deep here\n"
        + _window("[" * 160) + "\n" + " " * 87 + "^"),
    "calls_nested_100000_deep": (
        edited("  aggregator fedavg", DEEP_CALL_LINE).encode(),
        # the 101st '(' is at 13 + 100 * 18 + 10; the window starts 80 earlier,
        # at 1742, one character into a 'bucketing(inner = '.
        "{path}:13:1823: lists and calls are nested more than 100 deep here\n"
        + _window((CALL * 11)[1:161]) + "\n" + " " * 87 + "^"),
    "lists_nested_100_deep_reach_the_checker": (
        edited("[8]", "[" * 99 + "8" + "]" * 99).encode(),
        "{path}:5:22: parameter 'hidden' of model 'mlp' must be a list of int, got a list\n"
        "      model mlp(hidden = " + "[" * 99 + "8" + "]" * 39 + "...\n" + " " * 25 + "^"),
}


def _model_names() -> str:
    return ", ".join(default_registry().names("model"))


# name -> (the edit of VALID, the report): unknown names, wrong types, bounds.
EDITS = {
    "unknown_aggregator": (("aggregator fedavg", "aggregator fedavgg"),
                           "{path}:13:14: unknown aggregator 'fedavgg'; did you mean 'fedavg'?\n"
                           "      aggregator fedavgg\n                 ^"),
    "unknown_attack": (("attack label_flip", "attack lable_flip"),
                       "{path}:10:10: unknown attack 'lable_flip'; did you mean 'label_flip'?\n"
                       "      attack lable_flip(source = 1, target = 0) {\n             ^"),
    "unknown_nested_optimizer": (("optimizer sgd", "optimizer sgdd"),
                                 "{path}:8:15: unknown optimizer 'sgdd'; did you mean 'sgd'?\n"
                                 "        optimizer sgdd(learning_rate = 0.1)\n                  ^"),
    "unknown_model_with_no_close_name": (("model mlp(hidden = [8])", "model zzz"),
                                         "{path}:5:9: unknown model 'zzz'; known: {models}\n"
                                         "      model zzz\n            ^"),
    "unknown_parameter": (("source = 1", "sorce = 1"),
                          "{path}:10:21: attack 'label_flip' has no parameter 'sorce'; did you mean 'source'?\n"
                          "      attack label_flip(sorce = 1, target = 0) {\n                        ^"),
    "unknown_parameter_with_no_close_name": (
        ("samples = 200", "zzz = 200"),
        "{path}:3:21: dataset 'synthetic' has no parameter 'zzz'; it takes samples, features, classes, "
        "separation, test_fraction, data_seed\n"
        "      dataset synthetic(zzz = 200, features = 4, classes = 2)\n                        ^"),
    "unknown_training_setting": (("clients_per_round 5", "clients_per_rnd 5"),
                                 "{path}:7:5: unknown training setting 'clients_per_rnd'; "
                                 "did you mean 'clients_per_round'?\n        clients_per_rnd 5\n        ^"),
    "unknown_statement": (("aggregator fedavg", "aggregater fedavg"),
                          "{path}:13:3: unknown statement 'aggregater'; did you mean 'aggregator'?\n"
                          "      aggregater fedavg\n      ^"),
    "name_of_a_million_characters": (
        ("aggregator fedavg", "aggregator " + "f" * 10**6),
        "{path}:13:14: the name '" + "f" * 37 + "...' is 1000000 characters long; names have at most 100\n"
        "      aggregator " + "f" * 147 + "...\n                 ^"),
    "wrong_type_string_for_a_float": (
        ("learning_rate = 0.1", 'learning_rate = "fast"'),
        "{path}:8:35: parameter 'learning_rate' of optimizer 'sgd' must be a float, got string \"fast\"\n"
        '        optimizer sgd(learning_rate = "fast")\n                                      ^'),
    "wrong_type_integer_for_a_list": (
        ("hidden = [8]", "hidden = 8"),
        "{path}:5:22: parameter 'hidden' of model 'mlp' must be a list of int, got integer 8\n"
        "      model mlp(hidden = 8)\n                         ^"),
    "wrong_type_boolean_for_a_string": (
        ("source = 1", "mode = true"),
        "{path}:10:28: parameter 'mode' of attack 'label_flip' must be a str, got boolean true\n"
        "      attack label_flip(mode = true, target = 0) {\n                               ^"),
    "wrong_type_number_for_an_integer_setting": (
        ("clients_per_round 5", "clients_per_round 2.5"),
        "{path}:7:23: training setting 'clients_per_round' must be an int, got number 2.5\n"
        "        clients_per_round 2.5\n                          ^"),
    "wrong_type_string_for_rounds": (("rounds 2", 'rounds "2"'),
                                     "{path}:2:10: unexpected '\"2\"'; expected an integer\n"
                                     '      rounds "2"\n             ^'),
    "out_of_range_below": (
        ("learning_rate = 0.1", "learning_rate = -0.1"),
        "{path}:8:35: parameter 'learning_rate' of optimizer 'sgd' must be > 0, got -0.1\n"
        "        optimizer sgd(learning_rate = -0.1)\n                                      ^"),
    "out_of_range_integer_over_32_bits": (
        ("features = 4", "features = 99999999999"),
        "{path}:3:47: parameter 'features' of dataset 'synthetic' must be between 1 and 2147483647, "
        "got 99999999999\n"
        "      dataset synthetic(samples = 200, features = 99999999999, classes = 2)\n"
        "                                                  ^"),
    "out_of_range_choice": (
        ("source = 1", 'mode = "targetted"'),
        "{path}:10:28: parameter 'mode' of attack 'label_flip' must be one of 'targeted', 'all_to_one', "
        "'random', got 'targetted'; did you mean 'targeted'?\n"
        '      attack label_flip(mode = "targetted", target = 0) {\n                               ^'),
    "out_of_range_percentage": (("clients 2", "clients 150%"),
                                "{path}:11:13: attack clients must be between 0% and 100%, got 150%\n"
                                "        clients 150%\n                ^"),
    "out_of_range_seed": (("rounds 2", "rounds 2\n  seed 4294967296"),
                          "{path}:3:8: 'seed' must be between 0 and 4294967295 (a 32-bit seed), got 4294967296\n"
                          "      seed 4294967296\n           ^"),
    "out_of_range_rounds": (("rounds 2", "rounds 0"),
                            "{path}:2:10: 'rounds' must be >= 1, got 0\n      rounds 0\n             ^"),
    "out_of_range_clients_per_round": (
        ("clients_per_round 5", "clients_per_round 50"),
        "{path}:7:23: clients_per_round is 50, but the split has only 10 clients\n"
        "        clients_per_round 50\n                          ^"),
    "out_of_range_more_attackers_than_clients": (
        ("clients 2", "clients 11"),
        "{path}:10:3: the attack blocks take 11 clients, but the split has only 10\n"
        "      attack label_flip(source = 1, target = 0) {\n      ^"),
}


def _expected(report: str, path) -> str:
    return report.replace("{models}", _model_names()).replace("{path}", str(path)) + "\n"


def _run_in(folder, monkeypatch, capsys, command: str, path) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)  # a default results path would land here
    code = main([command, str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_refused(tmp_path, path, code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, err
    assert err == expected
    assert out == ""
    assert "Traceback" not in err
    # No results file, no results folder: nothing but the scenario itself.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("name", sorted(FILES))
def test_a_bad_file_exits_2_with_its_message(name, command, tmp_path, monkeypatch, capsys):
    data, report = FILES[name]
    path = tmp_path / f"{name}.fls"
    path.write_bytes(data)
    code, out, err = _run_in(tmp_path, monkeypatch, capsys, command, path)
    _assert_refused(tmp_path, path, code, out, err, _expected(report, path))


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_bad_plugin_or_value_exits_2_with_its_message(name, command, tmp_path, monkeypatch, capsys):
    (old, new), report = EDITS[name]
    path = tmp_path / f"{name}.fls"
    path.write_text(edited(old, new))
    code, out, err = _run_in(tmp_path, monkeypatch, capsys, command, path)
    _assert_refused(tmp_path, path, code, out, err, _expected(report, path))


def test_the_scenario_the_cases_edit_is_valid(tmp_path, monkeypatch, capsys):
    # Each case is VALID with one thing wrong, so its message is that thing's.
    path = tmp_path / "valid.fls"
    path.write_text(VALID)
    code, out, err = _run_in(tmp_path, monkeypatch, capsys, "check", path)
    assert (code, out, err) == (0, f"{path}: ok (2 rounds, 10 clients, 2 attackers)\n", "")


def test_a_10mb_scenario_padded_with_comments_checks(tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.fls"
    path.write_text(PADDING + VALID)
    assert path.stat().st_size > TEN_MB - len(PAD)
    code, out, err = _run_in(tmp_path, monkeypatch, capsys, "check", path)
    assert (code, out, err) == (0, f"{path}: ok (2 rounds, 10 clients, 2 attackers)\n", "")


def test_every_bad_file_at_once_in_a_real_process(tmp_path):
    # The command as a user runs it: its own process, stack and stdio.
    # `check` reports every file, in order, and exits 2.
    paths = []
    for name, (data, _) in sorted(FILES.items()):
        path = tmp_path / f"{name}.fls"
        path.write_bytes(data)
        paths.append(path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONIOENCODING="utf-8")
    result = subprocess.run([sys.executable, "-m", "fedarena.core.cli.main", "check", *map(str, paths)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr == "".join(_expected(FILES[p.stem][1], p) for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
