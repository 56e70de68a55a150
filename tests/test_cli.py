"""User errors through the real entry points: one line naming the problem, exit code 2, no traceback,
and nothing written over an earlier result."""

from __future__ import annotations

from pathlib import Path

import yaml

from quest.core.files import dvc_md5
from tests.conftest import repo_params
from tests.support import assert_user_error, quest


def write_params(root: Path, **overrides) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(repo_params(**overrides)))
    return path


def test_help_lists_the_stages(tmp_path):
    done = quest("--help", cwd=tmp_path)
    assert done.returncode == 0
    for stage in ("prepare", "train", "evaluate", "compare", "learning", "tune", "report", "verify"):
        assert f"  {stage} " in done.stdout
    assert "--params PARAMS" in quest("train", "--help", cwd=tmp_path).stdout


def test_bad_params_key_is_one_line_with_a_suggestion(tmp_path):
    params = write_params(tmp_path, train={"epoch": 3})
    done = quest("prepare", "--params", str(params), cwd=tmp_path)
    assert_user_error(
        done, "quest prepare: error: ", "params.yaml: unknown key train.epoch; did you mean train.epochs?"
    )


def test_a_failed_prepare_leaves_the_earlier_result_untouched(tmp_path):
    out = tmp_path / "processed"
    params = write_params(tmp_path)
    assert quest("prepare", "--params", str(params), "--out", str(out), cwd=tmp_path).returncode == 0
    before = dvc_md5(out)
    (tmp_path / "broken.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    write_params(tmp_path, data={"source": "csv", "path": "broken.csv", "target": "survived"})  # same file, now bad
    done = quest("prepare", "--params", str(params), "--out", str(out), cwd=tmp_path)
    assert_user_error(done, "quest prepare: error: ", "target column 'survived' (data.target) not found")
    assert dvc_md5(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary leftovers


def test_gpu_requested_without_one(tmp_path):
    out = tmp_path / "processed"
    params = write_params(tmp_path, train={"device": "gpu"})
    assert quest("prepare", "--params", str(params), "--out", str(out), cwd=tmp_path).returncode == 0
    done = quest("train", "--params", str(params), "--data", str(out), cwd=tmp_path)
    assert_user_error(done, "quest train: error: ", "train.device is gpu but the jax backend sees no GPU")
    assert not (tmp_path / "models").exists()


def test_corrupt_model_at_evaluate(tmp_path):
    out = tmp_path / "processed"
    params = write_params(tmp_path)
    assert quest("prepare", "--params", str(params), "--out", str(out), cwd=tmp_path).returncode == 0
    model = tmp_path / "mlp.keras"
    model.write_bytes(b"PK\x03\x04 not really a zip")
    done = quest(
        "evaluate",
        "--params",
        str(params),
        "--data",
        str(out),
        "--model",
        str(model),
        "--reports",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert_user_error(done, "quest evaluate: error: ", "cannot load the model")
