"""The study loader is bounded and strict: a file past a limit (size, nesting, aliases, values after
expansion), a recursive alias or a YAML 1.1 number form is one error line pointing into the file; a
message echoes values shortened and escaped; ``-`` reads standard input."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpo import SpecError
from hpo.spec import StudySpec, load_study_spec, load_yaml
from hpo.spec._yaml import ECHO_LIMIT, MAX_ALIASES, MAX_BYTES, MAX_DEPTH, MAX_NODES, dotted, shorten
from hpo.storage import Storage
from tests.cli import ROOT
from tests.cli import run_hpo as _hpo
from tests.hpo.test_study_spec import BASE
from tests.invariants import check_study


def _write(tmp_path: Path, text: str | bytes, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _error(text: str, source: str = "s.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        load_yaml(text, source)
    assert "\n" not in str(info.value)
    return info.value


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    """A document whose root mapping holds ``depth - 1`` nested collections: ``depth`` levels."""
    return "a: " + open_ * (depth - 1) + "1" + close * (depth - 1) + "\n"


def _bomb() -> str:
    """A "billion laughs": 9 lists of 9 aliases of the list before, 9**9 values once expanded."""
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# --- file size -------------------------------------------------------------------------------


def test_a_file_of_exactly_the_limit_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    padded = BASE + "#" * (MAX_BYTES - len(BASE) - 1) + "\n"
    assert len(padded.encode()) == MAX_BYTES
    assert isinstance(load_study_spec(_write(tmp_path, padded)), StudySpec)
    path = _write(tmp_path, padded + "#")
    with pytest.raises(SpecError) as info:
        load_study_spec(path)
    # The position is where the file reaches the limit: the first byte past it.
    line = BASE.count("\n") + 2
    assert (
        str(info.value) == f"{path}:{line}:1: the file is longer than 256 KiB, the most a study file may have"
    )
    assert (info.value.line, info.value.column) == (line, 1)


def test_a_device_is_read_only_up_to_the_limit() -> None:
    # /dev/zero never ends: reading it whole would never return.
    with pytest.raises(SpecError) as info:
        load_study_spec("/dev/zero")
    assert str(info.value) == (
        f"/dev/zero:1:{MAX_BYTES + 1}: the file is longer than 256 KiB, the most a study file may have"
    )


def test_an_in_memory_document_has_the_same_limit() -> None:
    err = _error("#" * MAX_BYTES + "\n")
    assert str(err) == f"s.yaml:1:{MAX_BYTES + 1}: the document is longer than {MAX_BYTES} characters"


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_study_spec(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"
    path = _write(tmp_path, b"name: s1\ndataset: {kind: d\xc3\xafgits\xff}\n")
    with pytest.raises(SpecError) as info:
        load_study_spec(path)
    assert str(info.value) == f"{path}:2:23: not UTF-8 text (byte 0xff)"  # columns count characters
    with pytest.raises(SpecError) as info:
        load_study_spec(_write(tmp_path, "name: s1\ndataset: \x00\n"))
    assert str(info.value).endswith(
        ":2:10: YAML syntax error: character '\\x00' (#x0000) is not allowed in YAML"
    )


# --- nesting depth ---------------------------------------------------------------------------


@pytest.mark.parametrize(("open_", "close"), [("[", "]"), ("{k: ", "}")])
def test_nesting_up_to_the_limit_loads_and_one_level_more_is_refused(open_: str, close: str) -> None:
    data, _ = load_yaml(_nested(MAX_DEPTH, open_, close))
    data = data["a"]
    for _ in range(MAX_DEPTH - 1):
        data = data[0] if isinstance(data, list) else data["k"]
    assert data == 1
    err = _error(_nested(MAX_DEPTH + 1, open_, close))
    column = 4 + len(open_) * (MAX_DEPTH - 1)  # the collection that would be one level too deep
    assert str(err) == f"s.yaml:1:{column}: lists and mappings nested deeper than {MAX_DEPTH} levels"
    assert (err.line, err.column) == (1, column)


def test_block_nesting_is_bounded_too() -> None:
    text = "".join("  " * i + "- \n" for i in range(MAX_DEPTH + 5))
    assert "nested deeper than 32 levels" in str(_error(text))


@pytest.mark.parametrize("text", ["a: " + "[" * 5000, "a: " + "{" * 5000, "a: " + "[a: " * 5000, "- " * 5000])
def test_thousands_of_open_brackets_are_one_error_not_a_recursion_error(text: str) -> None:
    err = _error(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in str(err)


def test_nesting_through_aliases_is_bounded_where_the_alias_is_written() -> None:
    half = MAX_DEPTH // 2 + 1
    text = f"x: &deep {'[' * half}1{']' * half}\ny: {'[' * half}*deep{']' * half}\n"
    err = _error(text)
    assert str(err) == (
        f"s.yaml:2:{4 + half}: lists and mappings nested deeper than {MAX_DEPTH} levels "
        "once *deep is expanded"
    )


# --- aliases and values ----------------------------------------------------------------------


def test_alias_uses_up_to_the_limit_load_and_one_more_is_refused() -> None:
    def doc(uses: int) -> str:
        return "x: &x 1\ny: [" + ", ".join(["*x"] * uses) + "]\n"

    data, positions = load_yaml(doc(MAX_ALIASES))
    assert data["y"] == [1] * MAX_ALIASES
    assert positions[("y", 1)] == (2, 9)  # an aliased value is where the alias is written
    err = _error(doc(MAX_ALIASES + 1))
    column = 5 + 4 * MAX_ALIASES
    assert str(err) == f"s.yaml:2:{column}: more than {MAX_ALIASES} alias uses (*name)"


def test_values_up_to_the_limit_load_and_one_more_is_refused() -> None:
    # The root mapping, the key `a` and the list are three values.
    data, _ = load_yaml("a: [" + "1," * (MAX_NODES - 3) + "]\n")
    assert len(data["a"]) == MAX_NODES - 3
    err = _error("a: [" + "1," * (MAX_NODES - 2) + "]\n")
    assert str(err) == f"s.yaml:1:{4 + 2 * (MAX_NODES - 3) + 1}: more than {MAX_NODES} values in the file"


def test_an_alias_bomb_is_refused_at_the_alias_that_expands_too_far() -> None:
    err = _error(_bomb())
    assert str(err) == f"s.yaml:5:8: more than {MAX_NODES} values once *d is expanded"


def test_values_from_aliases_count_once_per_use() -> None:
    block = "[" + ", ".join(["1"] * 99) + "]"  # 100 values
    # 1 root + 2 keys + 100 for x + 100 per use of *x.
    uses = (MAX_NODES - 103) // 100
    data, _ = load_yaml(f"x: &x {block}\ny: [" + ", ".join(["*x"] * uses) + "]\n")
    assert len(data["y"]) == uses
    err = _error(f"x: &x {block}\ny: [" + ", ".join(["*x"] * (uses + 1)) + "]\n")
    assert f"more than {MAX_NODES} values once *x is expanded" in str(err)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("a: &a [*a]\n", 8),
        ("a: &a {k: *a}\n", 11),
        ("a: &a [[1, *a]]\n", 12),
        ("a: &a {k: [1, {j: *a}]}\n", 19),
    ],
)
def test_a_recursive_alias_is_refused(text: str, column: int) -> None:
    err = _error(text)
    assert (
        str(err) == f"s.yaml:1:{column}: recursive alias *a: it refers to a list or mapping that contains it"
    )


def test_an_alias_to_a_finished_collection_is_fine() -> None:
    data, positions = load_yaml("a: &a [1, {b: 2}]\nc: *a\nd: {e: *a}\n")
    assert data == {"a": [1, {"b": 2}], "c": [1, {"b": 2}], "d": {"e": [1, {"b": 2}]}}
    assert positions[("c",)] == (2, 4) and positions[("d", "e")] == (3, 8)
    assert positions[("c", 1, "b")] == (1, 15)  # inside an alias: where the anchored value is written


# --- YAML 1.1 number forms, booleans, dates ----------------------------------------------------

ADVICE = "write a plain decimal number, or quote it for a string"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("010", f"010 is read as 8 by YAML 1.1 (octal); {ADVICE}"),
        ("-010", f"-010 is read as -8 by YAML 1.1 (octal); {ADVICE}"),
        ("00", f"00 is read as 0 by YAML 1.1 (octal); {ADVICE}"),
        ("1:30", f"1:30 is read as 90 by YAML 1.1 (sexagesimal, base 60); {ADVICE}"),
        ("1_0", f"1_0 is read as 10 by YAML 1.1 (digit separators); {ADVICE}"),
        ("0b10", f"0b10 is read as 2 by YAML 1.1 (binary); {ADVICE}"),
        ("0x1F", f"0x1F is read as 31 by YAML 1.1 (hexadecimal); {ADVICE}"),
        ("0x_", f"0x_ is not a number: {ADVICE}"),
        ("1_000.5", f"1_000.5 is read as 1000.5 by YAML 1.1 (digit separators); {ADVICE}"),
        ("1:30.0", f"1:30.0 is read as 90.0 by YAML 1.1 (sexagesimal, base 60); {ADVICE}"),
        ("1_0e3", f"1_0e3 is read as 10000.0 by YAML 1.1 (digit separators); {ADVICE}"),
        ("0x" + "F" * 80, f"0x{'F' * 58}... is a YAML 1.1 number (hexadecimal); {ADVICE}"),
        ("!!int 010", f"010 is read as 8 by YAML 1.1 (octal); {ADVICE}"),
        ("!!int abc", f"abc is not a plain decimal number: {ADVICE}"),
        ("!!float x", f"x is not a plain decimal number: {ADVICE}"),
        ("!!bool yes", "yes is not a boolean: write true or false"),
        ("1" * 5000, f"{'1' * ECHO_LIMIT}... has too many digits"),
    ],
)
def test_yaml_1_1_number_forms_are_refused_naming_the_field(value: str, message: str) -> None:
    err = _error(f"training:\n  epochs: {value}\n")
    assert str(err) == f"s.yaml:2:11: training.epochs: {message}"
    assert (err.field, err.line, err.column) == ("training.epochs", 2, 11)


def test_a_number_form_as_a_key_is_refused() -> None:
    assert (
        str(_error("a:\n  010: x\n")) == f"s.yaml:2:3: a: key 010 is read as 8 by YAML 1.1 (octal); {ADVICE}"
    )
    assert (
        str(_error("0x10: x\n")) == f"s.yaml:1:1: key 0x10 is read as 16 by YAML 1.1 (hexadecimal); {ADVICE}"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("-1", -1),
        ("+7", 7),
        ("1234567890123", 1234567890123),
        ("1.5", 1.5),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("1.", 1.0),
        ("01.5", 1.5),
        ("1e3", 1000.0),
        ("1E-4", 1e-4),
        ("2.5e+3", 2500.0),
        ("'010'", "010"),
        ("!!str 010", "010"),
        ("!!int 12", 12),
        ("!!float 1", 1.0),
        ("!!bool true", True),
        ("2024-01-01", "2024-01-01"),  # YAML 1.2 has no dates
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("no", "no"),
        ("False", False),
        ("1:x", "1:x"),
        ("0o17", "0o17"),
    ],
)
def test_plain_numbers_booleans_and_strings_are_read_as_written(value: str, expected: Any) -> None:
    data, _ = load_yaml(f"a: {value}\n")
    assert data["a"] == expected and type(data["a"]) is type(expected)


def test_the_timestamp_tag_is_refused() -> None:
    assert (
        str(_error("a: !!timestamp 2024-01-01\n"))
        == "s.yaml:1:4: unsupported YAML tag 'tag:yaml.org,2002:timestamp'"
    )


def test_a_date_name_is_a_string(tmp_path: Path) -> None:
    assert (
        load_study_spec(_write(tmp_path, BASE.replace("name: s1", "name: 2024-01-01"))).name == "2024-01-01"
    )


# --- messages echo values shortened, on one line -----------------------------------------------

LONG = "x" * 100_000


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            f"    {'k' * 500}.lr: {{type: float, low: 0.1, high: 0.2}}\n",
            f"search.parameters.{'k' * ECHO_LIMIT}...: unknown parameter '{'k' * (ECHO_LIMIT - 1)}...; lr is",
        ),
        (
            '    "a\\nb": {type: float, low: 0.1, high: 0.2}\n',
            "search.parameters.a\\nb: unknown parameter 'a\\nb'; valid names:",
        ),
        (
            f"    momentum: {{type: {LONG}, low: 0.1, high: 0.2}}\n",
            f"search.parameters.momentum.type: '{'x' * ECHO_LIMIT}...' is not one of",
        ),
        (
            f"    activation: {{type: categorical, choices: [{LONG}]}}\n",
            f"search.parameters.activation.choices[0]: '{'x' * (ECHO_LIMIT - 1)}... is not a valid "
            "model.activation",
        ),
        (
            f"    batch_size: {{type: int, low: 1, high: {'9' * 4000}}}\n",
            "search.parameters.batch_size.high: an integer of 13288 bits is not a valid training.batch_size",
        ),
        (f"x: *{LONG}\n", f"YAML syntax error: found undefined alias '{'x' * 100}"),
        (f"x: !{LONG} 1\n", "YAML syntax error: could not determine a constructor for the tag '!xxxx"),
    ],
)
def test_messages_echo_values_shortened_on_one_line(tmp_path: Path, extra: str, expected: str) -> None:
    path = _write(tmp_path, BASE + extra)
    with pytest.raises(SpecError) as info:
        load_study_spec(path)
    message = str(info.value).removeprefix(str(path))
    assert expected in message
    assert "\n" not in message and len(message) < 400


def test_a_deep_path_in_a_message_keeps_its_end() -> None:
    keys = [f"key{i}-" + "k" * 30 for i in range(MAX_DEPTH - 1)]
    text = "".join("  " * i + f"{k}:\n" for i, k in enumerate(keys)) + "  " * len(keys) + "v: 010\n"
    err = _error(text)
    assert err.field.startswith("...") and err.field.endswith(f"{keys[-1]}.v")
    assert len(err.field) <= 2 * ECHO_LIMIT + 3


def test_shorten_and_dotted() -> None:
    assert shorten("abc") == "abc"
    assert shorten("a\nb\x00c\u2028") == "a\\nb\\x00c\\u2028"
    assert shorten("x" * 61) == "x" * 60 + "..."
    assert shorten("x" * 60) == "x" * 60
    assert shorten("\n" * 40) == "\\n" * 30 + "..."
    assert shorten("a\nb", None) == "a\\nb"
    assert dotted(("search", "stages", 0, "trials")) == "search.stages[0].trials"
    assert dotted(()) == ""
    assert dotted((0, "a")) == "[0].a"
    assert dotted(("a" * 200,)) == "a" * 60 + "..."
    assert dotted(tuple(f"k{i}" for i in range(100)), limit=20) == "...k96.k97.k98.k99"


# --- standard input ----------------------------------------------------------------------------


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, BASE.encode())
    assert load_study_spec("-").name == "s1"
    _stdin(monkeypatch, BASE.encode())
    assert load_study_spec(Path("-")).name == "s1"  # the CLI's argument is a Path
    _stdin(monkeypatch, b"name: [\n")
    with pytest.raises(SpecError, match=r"^<stdin>:2:1: YAML syntax error: "):
        load_study_spec("-")
    _stdin(monkeypatch, b"#" * (MAX_BYTES + 10))
    with pytest.raises(SpecError, match=rf"^<stdin>:1:{MAX_BYTES + 1}: the file is longer than 256 KiB"):
        load_study_spec("-")


def test_closed_or_missing_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.TextIOWrapper(io.BytesIO(b""))
    stream.close()
    monkeypatch.setattr(sys, "stdin", stream)
    with pytest.raises(SpecError, match=r"^<stdin>: cannot read: "):
        load_study_spec("-")
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(SpecError, match=r"^<stdin>: cannot read: there is no standard input$"):
        load_study_spec("-")


# --- the command line --------------------------------------------------------------------------


CLI_CASES = {
    "size": (BASE + "#" * MAX_BYTES, f":8:{MAX_BYTES - len(BASE) + 1}: the file is longer than 256 KiB"),
    "depth": (
        BASE + "model: " + "[" * 5000 + "\n",
        f":8:{8 + MAX_DEPTH - 1}: lists and mappings nested deeper",
    ),
    "aliases": (
        "x: &x 1\ny: [" + ", ".join(["*x"] * 1000) + "]\n",
        f":2:{5 + 4 * MAX_ALIASES}: more than 100 alias",
    ),
    "values": (_bomb(), ":5:8: more than 10000 values once *d is expanded"),
    "recursion": (BASE + "model: &m [*m]\n", ":8:12: recursive alias *m"),
    "yaml_1_1": (
        BASE.replace("epochs: 2", "epochs: 010"),
        ":5:27: search.stages[0].epochs: 010 is read as 8",
    ),
    # A key holding 10 000 newlines (`? key`, `: value`: a plain `key: value` has at most 1024 characters).
    "echo": (
        BASE + '    ? "' + "k\\n" * 10_000 + '"\n    : {type: int, low: 1, high: 2}\n',
        ":9:7: search.parameters.k\\nk",
    ),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_validate_refuses_each_limit_with_one_line_and_exit_code_2(tmp_path: Path, case: str) -> None:
    text, expected = CLI_CASES[case]
    path = _write(tmp_path, text)
    proc = _hpo("validate", str(path), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {path}{expected}"), proc.stderr
    assert len(proc.stderr) < len(str(path)) + 400


def test_validate_refuses_a_device_quickly() -> None:
    proc = _hpo("validate", "/dev/zero", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: /dev/zero:1:{MAX_BYTES + 1}: the file is longer than 256 KiB, "
        "the most a study file may have\n"
    )


def _hpo_stdin(text: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hpo", *args]
    return subprocess.run(
        command, cwd=ROOT, input=text, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_validate_dash_reads_standard_input() -> None:
    proc = _hpo_stdin(BASE, "validate", "-")
    assert proc.returncode == 0, proc.stderr
    assert "ok: study s1, 4 trials in 1 stage," in proc.stderr
    proc = _hpo_stdin(BASE.replace("epochs: 2", "epochs: 0x1"), "validate", "-")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "error: <stdin>:5:27: search.stages[0].epochs: 0x1 is read as 1 by YAML 1.1"
    )


def test_submit_dash_runs_the_study_from_standard_input(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo_stdin(BASE, "submit", "-", "--db", db, "--workers", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    storage = Storage(db)
    assert check_study(storage, "s1")["study"].state == "COMPLETE"
    bad = _hpo_stdin(BASE.replace("name: s1", "name: s2\nseed: 1:30"), "submit", "-", "--db", db)
    assert bad.returncode == 2 and bad.stderr.startswith("error: <stdin>:2:7: seed: 1:30 is read as 90")
    assert storage.find_study("s2") is None
