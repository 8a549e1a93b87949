"""Checkpoints: save -> load -> identical outputs, weights_only safety, version and atomicity."""

from __future__ import annotations

import pickle

import pytest
import torch
from helpers import outputs, small_parts

from cka_probe.asr import load_checkpoint, save_checkpoint
from cka_probe.asr.checkpoint import FORMAT_VERSION
from cka_probe.errors import CKAProbeError

torch.set_num_threads(1)


class Custom:
    """A class that plain ``torch.load(weights_only=True)`` refuses to unpickle."""


@pytest.mark.parametrize("arch,tasks", [("do", ("surface", "meaning")), ("so", ("meaning",))])
def test_save_load_gives_identical_outputs_and_rebuilt_parts(tmp_path, arch, tasks):
    model, config, tokenizers, cmvn = small_parts(arch, tasks)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(
        torch.randn(2, 40, 80),
        torch.tensor([40, 33]),
        {t: torch.tensor([[2, 3], [4, -1]]) for t in tasks},
        {t: torch.tensor([2, 1]) for t in tasks},
    )["loss"].backward()
    optimizer.step()  # non-trivial optimizer state and BatchNorm running statistics
    model.eval()
    path = save_checkpoint(
        tmp_path / "sub" / "best.pt",
        model=model,
        config=config,
        tokenizers=tokenizers,
        cmvn=cmvn,
        epoch=3,
        metrics={"valid_loss": 1.5},
        optimizer=optimizer,
        extra={"note": "x"},
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and raw["arch"] == arch and raw["tasks"] == list(tasks)
    assert raw["optimizer"]["state"] and raw["extra"] == {"note": "x"}
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training and loaded.arch == arch and loaded.tasks == tasks
    for before, after in zip(outputs(model, tasks), outputs(loaded, tasks)):
        assert torch.equal(before, after)
    assert (ckpt["epoch"], ckpt["metrics"]) == (3, {"valid_loss": 1.5})
    assert all(ckpt["tokenizers"][t].symbols == tokenizers[t].symbols for t in tasks)
    feats = torch.randn(7, 80)
    assert torch.equal(ckpt["cmvn"](feats), cmvn(feats))


def test_checkpoint_that_needs_code_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "payload": Custom()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(
        CKAProbeError, match=r"evil\.pt: not a cka-probe checkpoint \(holds Python objects"
    ) as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)


def test_format_version_mismatch_and_foreign_files_are_clear_errors(tmp_path):
    model, config, tokenizers, cmvn = small_parts()
    path = save_checkpoint(
        tmp_path / "a.pt", model=model, config=config, tokenizers=tokenizers, cmvn=cmvn, epoch=0, metrics={}
    )
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(CKAProbeError, match=rf"future\.pt: checkpoint format_version {FORMAT_VERSION + 1}"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CKAProbeError, match=r"other\.pt: not a cka-probe checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CKAProbeError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CKAProbeError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_config_name_the_file(tmp_path):
    model, config, tokenizers, cmvn = small_parts()
    path = save_checkpoint(
        tmp_path / "a.pt", model=model, config=config, tokenizers=tokenizers, cmvn=cmvn, epoch=0, metrics={}
    )
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["encoder"]["n_layers"] = 3
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(CKAProbeError, match=r"edited\.pt: weights do not fit"):
        load_checkpoint(tmp_path / "edited.pt")


def test_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    model, config, tokenizers, cmvn = small_parts()
    path = save_checkpoint(
        tmp_path / "last.pt",
        model=model,
        config=config,
        tokenizers=tokenizers,
        cmvn=cmvn,
        epoch=1,
        metrics={},
    )
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CKAProbeError, match=r"last\.pt: disk full while writing"):
        save_checkpoint(
            path, model=model, config=config, tokenizers=tokenizers, cmvn=cmvn, epoch=2, metrics={}
        )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
