"""One RunFolder for `train` and `distill`: the files a run leaves (config.json, metrics.jsonl, checkpoint) keep
their format, a stopped run resumes from them, and a folder is claimed by one run only."""

import dataclasses
import json
import subprocess
import sys

import pytest

from conftest import make_tiny_model
from fastddpm.configs import TrainConfig
from fastddpm.distill.loop import distill
from fastddpm.errors import UsageError
from fastddpm.runtime import cpu_has_native_bf16
from fastddpm.training.checkpoint import CHECKPOINT_NAME, TrainCounters
from fastddpm.training.loop import train
from fastddpm.training.run_folder import RunFolder
from test_distill import tiny_config as tiny_distill_config
from test_train import tiny_config as tiny_train_config


def records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_a_stopped_training_run_resumes_from_its_folder(tiny_data, tmp_path):
    out = tmp_path / "run"
    config = tiny_train_config(tiny_data, out)
    assert train(config, max_steps=2).step == 2
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(config.to_dict()))
    assert RunFolder(out).saved_config(TrainConfig.from_dict) == config
    assert (out / CHECKPOINT_NAME).is_file()
    assert train(tiny_train_config(tiny_data, out), resume=True, max_steps=2).step == 4
    log = records(out)
    assert log[0]["event"] == "start" and log[0]["step"] == 0 and "train_seconds" in log[0]
    assert log[0]["autocast"] == ("bfloat16" if cpu_has_native_bf16() else "off")  # what auto chose here
    assert [r for r in log if r.get("event") == "start"] == [log[0]]  # the resumed run appended to the log
    assert [r["step"] for r in log] == sorted(r["step"] for r in log) and log[-1]["step"] >= 2


@pytest.mark.slow
def test_a_stopped_distillation_resumes_from_its_folder(tiny_data, tmp_path):
    teacher = make_tiny_model(tmp_path / "teacher")
    out = tmp_path / "distill"
    config = tiny_distill_config(teacher, tiny_data, out)
    stopped = distill(config, step_limit=3)
    assert stopped.model_dir is None and stopped.step == 3
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(dataclasses.asdict(config)))
    start = records(out)[0]
    assert start["event"] == "start" and start["stages"] == config.stages() and start["step"] == 0
    resumed = distill(tiny_distill_config(teacher, tiny_data, out), resume=True)
    assert resumed.step == 8 and (resumed.model_dir / "model.safetensors").is_file()
    assert sum(r.get("event") == "start" for r in records(out)) == 1


def test_a_corrupt_distillation_config_is_refused_on_resume(tiny_data, tmp_path):
    teacher = make_tiny_model(tmp_path / "teacher")
    out = tmp_path / "distill"
    out.mkdir()
    (out / "config.json").write_text('{"model": "x", "unknown": 1}')
    with pytest.raises(UsageError, match="is not a fastddpm distillation config"):
        distill(tiny_distill_config(teacher, tiny_data, out), resume=True)


def test_a_folder_holds_one_run(tmp_path):
    folder = RunFolder(tmp_path / "run", "distillation")
    with pytest.raises(UsageError, match="holds no config.json of an earlier distillation"):
        folder.saved_config(dict)
    folder.path.mkdir()
    folder.claim_new()  # an empty folder is free
    (folder.path / CHECKPOINT_NAME).write_bytes(b"")
    with pytest.raises(UsageError, match="already holds a run; pass --resume"):
        folder.claim_new()
    (folder.path / CHECKPOINT_NAME).unlink()
    folder.write_config({"a": 1})
    with pytest.raises(UsageError, match="already holds a run"):
        folder.claim_new()
    assert folder.saved_config(dict) == {"a": 1}
    folder.config_path.write_text("{not json")
    with pytest.raises(UsageError, match="is not a fastddpm distillation config"):
        folder.saved_config(dict)


def test_the_log_appends_one_record_per_call_and_a_fresh_run_restarts_it(tmp_path):
    folder = RunFolder(tmp_path)
    folder.log(TrainCounters(step=3, train_seconds=1.234), loss=0.5)
    folder.log(TrainCounters(step=4, train_seconds=2.0), event="stop")
    assert records(tmp_path) == [
        {"step": 3, "train_seconds": 1.23, "loss": 0.5},
        {"step": 4, "train_seconds": 2.0, "event": "stop"},
    ]
    folder.restart_log()
    assert not folder.metrics_path.exists()


@pytest.mark.slow
def test_training_does_not_import_distillation():
    code = (
        "import sys, fastddpm.training.loop, fastddpm.training.run_folder; "
        "assert not [m for m in sys.modules if m.startswith('fastddpm.distill')], 'distill imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
