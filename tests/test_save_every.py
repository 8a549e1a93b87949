"""``train --save-every E``: the weights at initialisation and after every E-th epoch, loadable like
``best.pt``, kept across a resumed run."""

from __future__ import annotations

import pytest
import torch
from helpers import interrupt_in_epoch, read_log, small_config, train_small

from cka_probe.asr.checkpoint import load_checkpoint
from cka_probe.asr.train import untrained
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshots(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("epoch-*.pt"))


def state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_snapshots_hold_the_initial_weights_and_every_second_epoch(speech_corpus, tmp_path):
    out = tmp_path / "run"
    train_small(
        speech_corpus, arch="so", task="surface", config=small_config(epochs=3), out_dir=out, save_every=2
    )
    assert snapshots(out) == ["epoch-0000.pt", "epoch-0002.pt"]
    init = untrained(
        arch="so",
        task="surface",
        train_manifest=speech_corpus["train"],
        valid_manifest=speech_corpus["valid"],
        config=small_config(epochs=3),
        out_dir=tmp_path / "init",
        seed=small_config()["train"]["seed"],
    )
    assert_same_weights(state(out / "epoch-0000.pt"), state(init))
    model, ckpt = load_checkpoint(out / "epoch-0002.pt")  # what extract reads
    assert ckpt["epoch"] == 2 and "optimizer" not in ckpt
    assert ckpt["metrics"]["train_loss"] == pytest.approx(float(read_log(out / "log.csv")[1]["train_loss"]))
    assert_same_weights(model.state_dict(), state(out / "epoch-0002.pt"))
    assert not torch.equal(*(next(iter(state(out / f).values())) for f in ("epoch-0000.pt", "epoch-0002.pt")))


def test_a_resumed_run_keeps_its_snapshots_and_writes_the_rest(speech_corpus, tmp_path, monkeypatch):
    common = dict(arch="so", task="surface", config=small_config(epochs=3), save_every=1)
    train_small(speech_corpus, **common, out_dir=tmp_path / "straight")
    interrupt_in_epoch(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_small(speech_corpus, **common, out_dir=tmp_path / "halves")
    monkeypatch.undo()
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "halves").glob("epoch-*.pt")}
    assert sorted(kept) == ["epoch-0000.pt", "epoch-0001.pt", "epoch-0002.pt"]
    train_small(speech_corpus, **common, out_dir=tmp_path / "halves")  # a rerun resumes
    assert {n: (tmp_path / "halves" / n).stat().st_mtime_ns for n in kept} == kept
    assert (
        snapshots(tmp_path / "halves")
        == snapshots(tmp_path / "straight")
        == [f"epoch-{e:04d}.pt" for e in range(4)]
    )
    for name in snapshots(tmp_path / "straight"):
        assert_same_weights(state(tmp_path / "halves" / name), state(tmp_path / "straight" / name))
    train_small(speech_corpus, **common | {"save_every": None}, out_dir=tmp_path / "halves", overwrite=True)
    assert snapshots(tmp_path / "halves") == []


def test_save_every_must_be_a_positive_integer(speech_corpus, tmp_path, capsys):
    with pytest.raises(CKAProbeError, match="save_every must be an integer >= 1"):
        train_small(speech_corpus, arch="so", task="surface", out_dir=tmp_path / "api", save_every=0)
    for bad in ("0", "-1", "1.5"):
        with pytest.raises(SystemExit) as exit_:
            argv = ["train", "--arch", "so", "--task", "surface", "--data", "t.jsonl", "--valid", "v.jsonl"]
            main([*argv, "--out", str(tmp_path / "cli"), "--save-every", bad])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "argument --save-every" in err
    assert not list(tmp_path.iterdir())
