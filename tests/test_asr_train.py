"""Training, resuming and evaluating the bundled models on a handful of espeak-ng utterances.

The models here are cut down from ``tiny`` (2 encoder blocks, no dropout, no
label smoothing, no SpecAugment) so that memorising 4 utterances takes well
under a minute on one CPU thread.
"""

import json
import math

import pandas as pd
import pytest
import torch
from helpers import SPEECH_UTTERANCES, interrupt_in_epoch, read_log, small_config, train_small

from cka_probe.asr.evaluate import evaluate, score, summary_path_for
from cka_probe.asr.schedule import warmup_cosine
from cka_probe.asr.train import Run, log_columns, tasks_for, train
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError

pytestmark = pytest.mark.usefixtures("one_thread")

EXPECTED_BINS = ["1-3", "1-3", "4-10", "0"]


@pytest.fixture(scope="module")
def so_run(speech_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("so")
    torch.set_num_threads(1)
    train_small(speech_corpus, arch="so", task="surface", out_dir=out)
    return out


def assert_overfits(out, train_manifest, tasks):
    log = read_log(out / "log.csv")
    assert list(log[0]) == log_columns(tasks)
    assert float(log[-1]["train_loss"]) <= 0.1 * float(log[0]["train_loss"])
    table = evaluate(out / "last.pt", train_manifest, out / "cer.csv")
    for task in tasks:
        rows = table[table["task"] == task]
        assert len(rows) == len(SPEECH_UTTERANCES)
        assert rows["errors"].sum() / rows["ref_len"].sum() <= 0.05, rows[["ref", "hyp"]].to_string()


def test_so_model_memorises_four_utterances(so_run, speech_corpus):
    assert_overfits(so_run, speech_corpus["train"], ("surface",))
    assert (so_run / "best.pt").is_file()


def test_do_model_memorises_four_utterances(speech_corpus, tmp_path):
    train_small(speech_corpus, arch="do", out_dir=tmp_path)
    assert_overfits(tmp_path, speech_corpus["train"], ("surface", "meaning"))


def test_resume_continues_bitwise(speech_corpus, tmp_path, monkeypatch):
    # dropout and SpecAugment on, so that the saved RNG state matters
    config = small_config(
        epochs=4,
        batch_size=2,
        spec_augment={
            "freq_masks": 1,
            "freq_width": 5,
            "time_masks": 1,
            "time_width": 10,
            "max_time_fraction": 0.2,
        },
    )
    config["encoder"]["dropout"] = config["decoder"]["dropout"] = 0.1
    train_small(speech_corpus, arch="do", config=config, out_dir=tmp_path / "straight")
    interrupt_in_epoch(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_small(speech_corpus, arch="do", config=config, out_dir=tmp_path / "halves")
    monkeypatch.undo()
    assert len(read_log(tmp_path / "halves" / "log.csv")) == 2
    train_small(
        speech_corpus, arch="do", config="ignored-on-resume", resume=True, out_dir=tmp_path / "halves"
    )
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    halves = torch.load(tmp_path / "halves" / "last.pt", weights_only=True)
    assert straight["epoch"] == halves["epoch"] == 4
    for name, value in straight["model_state"].items():
        assert torch.equal(value, halves["model_state"][name]), name
    without_time = [
        [(k, v) for k, v in row.items() if k != "seconds"]
        for row in (read_log(tmp_path / "straight" / "log.csv") + read_log(tmp_path / "halves" / "log.csv"))
    ]
    assert without_time[:4] == without_time[4:]


def test_time_budget_cuts_the_planned_epochs(speech_corpus, tmp_path):
    train_small(
        speech_corpus,
        arch="so",
        task="meaning",
        config=small_config(epochs=50),
        max_minutes=1e-6,
        out_dir=tmp_path,
    )
    assert len(read_log(tmp_path / "log.csv")) == 1
    assert torch.load(tmp_path / "last.pt", weights_only=True)["config"]["train"]["epochs"] == 1


def test_validation_decodes_only_the_first_valid_decode_utterances(speech_corpus, monkeypatch):
    from cka_probe.asr import train as train_module

    decoded, transcribe = [], train_module.transcribe

    def counting(model, tokenizers, feats, *args, **kwargs):
        decoded.append(feats.shape[0])
        return transcribe(model, tokenizers, feats, *args, **kwargs)

    monkeypatch.setattr(train_module, "transcribe", counting)
    manifest = speech_corpus["train"]
    for limit, want in ((None, 4), (2, 2), (3, 4)):  # whole batches of 2, until `limit` are decoded
        decoded.clear()
        run = Run.prepare(
            "so",
            ("surface",),
            small_config(batch_size=2, valid_decode=limit),
            manifest,
            manifest,
            None,
            "cpu",
        )
        metrics = run.validate()
        assert sum(decoded) == want and math.isfinite(metrics["loss"]) and metrics["cer_surface"] >= 0


def test_evaluate_writes_the_interface_columns_and_a_consistent_summary(so_run, speech_corpus, tmp_path):
    out = tmp_path / "cer.csv"
    evaluate(so_run / "best.pt", speech_corpus["train"], out, decoding="attention", beam=3)
    table = pd.read_csv(out, dtype={"ed_bin": str})
    assert list(table.columns) == [
        "id",
        "language",
        "task",
        "decoding",
        "ref",
        "hyp",
        "errors",
        "ref_len",
        "cer",
        "surface_meaning_ed",
        "ed_bin",
    ]
    assert table["surface_meaning_ed"].tolist() == [ed for _, _, ed in SPEECH_UTTERANCES]
    assert table["ed_bin"].tolist() == EXPECTED_BINS
    assert (table["ref_len"] == [len(s) for s, _, _ in SPEECH_UTTERANCES]).all()
    summary = json.loads(summary_path_for(out).read_text())
    surface = summary["tasks"]["surface"]
    assert surface["cer"] == pytest.approx(100 * table["errors"].sum() / table["ref_len"].sum())
    assert sum(b["ref_len"] for b in surface["by_ed_bin"].values()) == table["ref_len"].sum()
    assert summary["beam"] == 3 and summary["n_utterances"] == len(SPEECH_UTTERANCES)


def test_ctc_decoding_scores_the_ctc_task_only(so_run, speech_corpus, tmp_path):
    table = evaluate(so_run / "best.pt", speech_corpus["train"], tmp_path / "ctc.csv", decoding="ctc")
    assert set(table["task"]) == {"surface"} and set(table["decoding"]) == {"ctc"}
    assert table["errors"].sum() / table["ref_len"].sum() <= 0.10


def test_evaluate_rejects_unknown_decoding_before_writing(so_run, speech_corpus, tmp_path):
    with pytest.raises(CKAProbeError, match="decoding"):
        evaluate(so_run / "best.pt", speech_corpus["train"], tmp_path / "x.csv", decoding="prefix")
    assert list(tmp_path.iterdir()) == []


def test_korean_rows_carry_jamo_cer():
    references = {"k1": {"id": "k1", "language": "ko", "surface": "닥 먹어", "meaning": "닭 먹어"}}
    table = score(references, {"meaning": {"k1": "닥 먹어"}}, "attention")
    row = table.iloc[0]
    assert (row["errors"], row["ref_len"], row["jamo_errors"], row["jamo_ref_len"]) == (1, 4, 1, 9)
    assert row["cer"] == pytest.approx(25.0) and row["jamo_cer"] == pytest.approx(100 / 9)
    assert (row["surface_meaning_ed"], row["ed_bin"]) == (1, "1-3")


def test_cli_trains_and_evaluates(speech_corpus, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(small_config(epochs=1)))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--arch",
                "so",
                "--task",
                "meaning",
                "--data",
                str(speech_corpus["train"]),
                "--valid",
                str(speech_corpus["valid"]),
                "--config",
                str(config),
                "--out",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "log.csv"}
    assert (
        main(
            [
                "evaluate",
                str(out / "best.pt"),
                "--data",
                str(speech_corpus["train"]),
                "--out",
                str(tmp_path / "cer.csv"),
                "--decoding",
                "ctc",
            ]
        )
        == 0
    )
    assert "meaning" in capsys.readouterr().out
    assert set(pd.read_csv(tmp_path / "cer.csv")["task"]) == {"meaning"}


def test_manifest_without_a_transcript_names_file_and_line(speech_corpus, tmp_path, capsys):
    broken = [dict(r, audio=str(speech_corpus["folder"] / r["audio"])) for r in speech_corpus["rows"]]
    del broken[1]["meaning"]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in broken))
    with pytest.raises(CKAProbeError, match=r"train\.jsonl:2: .*meaning"):
        train(
            arch="do",
            train_manifest=path,
            valid_manifest=speech_corpus["valid"],
            config=small_config(),
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()
    assert (
        main(
            [
                "train",
                "--arch",
                "do",
                "--data",
                str(path),
                "--valid",
                str(speech_corpus["valid"]),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "train.jsonl:2" in capsys.readouterr().err


def test_resume_needs_a_last_checkpoint(speech_corpus, tmp_path):
    with pytest.raises(CKAProbeError, match="last.pt"):
        train_small(speech_corpus, arch="do", out_dir=tmp_path, resume=True)


def test_a_rerun_resumes_its_own_training_and_refuses_another(speech_corpus, tmp_path, capsys):
    common = dict(arch="so", task="surface", out_dir=tmp_path)
    train_small(speech_corpus, **common, config=small_config(epochs=1))
    first = torch.load(tmp_path / "last.pt", weights_only=True)
    train_small(speech_corpus, **common, config=small_config(epochs=1))  # finished: nothing is trained again
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert torch.equal(
        torch.load(tmp_path / "last.pt", weights_only=True)["model_state"]["ctc.proj.weight"],
        first["model_state"]["ctc.proj.weight"],
    )
    # the same config trained longer
    train_small(speech_corpus, **common, config=small_config(epochs=1), epochs=2)
    assert [int(row["epoch"]) for row in read_log(tmp_path / "log.csv")] == [1, 2]
    with pytest.raises(
        CKAProbeError,
        match="last.pt: an interrupted training with another 'train' config; "
        "pass --resume to continue it or --overwrite to start again",
    ):
        train_small(speech_corpus, **common, config=small_config(epochs=1, lr=1e-3))
    train_small(speech_corpus, **common, config=small_config(epochs=1, lr=1e-3), overwrite=True)
    assert [int(row["epoch"]) for row in read_log(tmp_path / "log.csv")] == [1]


@pytest.mark.parametrize(
    "arch, task, message", [("so", None, "--task"), ("do", "surface", "both tasks"), ("xx", None, "arch")]
)
def test_arch_and_task_are_checked(arch, task, message):
    with pytest.raises(CKAProbeError, match=message):
        tasks_for(arch, task)


def test_warmup_cosine_schedule():
    peak, warmup, total = 1e-3, 10, 110
    lrs = [warmup_cosine(s, peak=peak, warmup=warmup, total=total, floor=0.1) for s in range(total + 5)]
    assert lrs[0] == pytest.approx(peak / warmup)
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup]))
    assert lrs[warmup - 1] == pytest.approx(peak)  # the last warm-up step reaches the peak
    assert lrs[warmup] == pytest.approx(peak)  # decay starts at the peak ...
    assert lrs[warmup + 50] == pytest.approx(peak * (0.1 + 0.9 * 0.5))  # ... cos(π/2) = 0 halfway ...
    assert lrs[warmup + 25] == pytest.approx(peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert lrs[total:] == pytest.approx([0.1 * peak] * 5)  # ... and stays at the floor after the end


def train_cli(corpus, out, *options):
    """The exit code of ``cka-probe train --arch so --task surface`` on ``corpus`` into ``out``."""
    data = ["--data", str(corpus["train"]), "--valid", str(corpus["valid"])]
    return main(["train", "--arch", "so", "--task", "surface", *data, "--out", str(out), *options])


def test_a_config_value_of_a_wrong_type_names_the_config_file(speech_corpus, tmp_path, capsys):
    config = small_config()
    config["encoder"]["d_model"] = "96"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert train_cli(speech_corpus, tmp_path / "out", "--config", str(path)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"{path}: encoder.d_model must be a positive integer, not '96' (str)" in err
    assert not (tmp_path / "out").exists()


def test_a_config_dict_of_a_wrong_type_is_refused_by_the_api(speech_corpus, tmp_path):
    config = small_config()
    config["train"]["batch_size"] = 2.5
    with pytest.raises(CKAProbeError, match=r"config: train.batch_size must be a positive integer, not 2.5"):
        train_small(speech_corpus, arch="so", task="surface", config=config, out_dir=tmp_path)


@pytest.mark.parametrize("which", ["train", "valid"])
def test_training_never_writes_over_its_manifests(speech_corpus, tmp_path, which, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "log.csv").symlink_to(speech_corpus[which])
    before = speech_corpus[which].read_bytes()
    assert train_cli(speech_corpus, out, "--config", "tiny") == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is an input of this command" in err and str(out / "log.csv") in err
    assert speech_corpus[which].read_bytes() == before


def test_training_never_writes_over_its_config(speech_corpus, tmp_path):
    config = tmp_path / "best.pt"
    config.write_text(json.dumps(small_config()))
    with pytest.raises(CKAProbeError, match="best.pt is an input of this command"):
        train_small(speech_corpus, arch="so", task="surface", config=config, out_dir=tmp_path, overwrite=True)
    assert json.loads(config.read_text()) == small_config()


@pytest.mark.parametrize(
    "option, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, not 0"),
        ({"epochs": 2.0}, "epochs must be an integer >= 1, not 2.0"),
        ({"seed": -1}, "seed must be an integer >= 0, not -1"),
        ({"lr": math.inf}, "lr must be a finite number > 0, not inf"),
        ({"device": "gpu"}, "device 'gpu' is not a torch device"),
    ],
)
def test_the_api_checks_its_overrides(speech_corpus, tmp_path, option, message):
    with pytest.raises(CKAProbeError, match=message):
        train_small(speech_corpus, arch="so", task="surface", out_dir=tmp_path / "out", **option)
    assert not (tmp_path / "out").exists()


def test_a_diverging_learning_rate_is_named_with_what_to_do(speech_corpus, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(small_config(epochs=3)))
    assert train_cli(speech_corpus, tmp_path / "out", "--config", str(config), "--lr", "1e23") == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "non-finite loss at epoch " in err
    assert err.rstrip().endswith("(learning rate 1e+23); lower --lr or check the data")
