"""Options are checked when the command line is parsed: one usage line naming the option, exit 2."""

from __future__ import annotations

import pytest

from cka_probe.cli import main

BAD = [
    (["extract", "m.pt", "--data", "d.jsonl", "--out", "o.h5", "--batch-size"], "0", "--batch-size"),
    (["extract", "m.pt", "--data", "d.jsonl", "--out", "o.h5", "--batch-size"], "9" * 23, "--batch-size"),
    (["extract", "m.pt", "--data", "d.jsonl", "--out", "o.h5", "--limit"], "-1", "--limit"),
    (["extract", "m.pt", "--data", "d.jsonl", "--out", "o.h5", "--device"], "gpu", "--device"),
    (["extract", "m.pt", "--data", "d.jsonl", "--out", "o.h5", "--device"], "cuda:7", "--device"),
    (["evaluate", "m.pt", "--data", "d.jsonl", "--out", "o.csv", "--beam"], "5000", "--beam"),
    (["evaluate", "m.pt", "--data", "d.jsonl", "--out", "o.csv", "--threads"], "9" * 23, "--threads"),
    (["train", "--train", "t.jsonl", "--valid", "v.jsonl", "--out", "o", "--lr"], "nan", "--lr"),
    (["train", "--train", "t.jsonl", "--valid", "v.jsonl", "--out", "o", "--seed"], "1e309", "--seed"),
    (["reproduce", "--out", "run", "--seeds"], "0", "--seeds"),
    (["reproduce", "--out", "run", "--jobs"], "-2", "--jobs"),
    (["reproduce", "--out", "run", "--train-minutes"], "inf", "--train-minutes"),
    (["compare", "a.npz", "b.npz", "--sigma"], "0", "--sigma"),
    (["compare", "a.npz", "b.npz", "--sigma"], "1e23", "--sigma"),
    (["compare", "--cross-task", "s.h5", "--n-boot"], "1e23", "--n-boot"),
    (["compare", "--cross-task", "s.h5", "--n-perm"], "99999999999999999999999", "--n-perm"),
]


@pytest.mark.parametrize(("argv", "value", "option"), BAD, ids=[f"{a[0]}{o}={v[:6]}" for a, v, o in BAD])
def test_a_bad_option_value_is_one_usage_line_naming_it(capsys, argv, value, option):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and f"argument {option}" in err and "--help" in err
