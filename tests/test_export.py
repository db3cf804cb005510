import json

import onnx
import pytest
import torch

from conftest import make_tiny_model
from fastddpm.backends import make_backend
from fastddpm.errors import UsageError
from fastddpm.configs import SampleSettings
from fastddpm.export.artifacts import find_export, open_backend, sidecar_path
from fastddpm.model import checkpoint_sha256
from fastddpm.backends.contract import UNetIO, parse_batch_profile
from fastddpm.export.onnx_export import export_onnx
from fastddpm.sampling.batch import generate, image_seeds
from fastddpm.model import ModelCard, load_model
from fastddpm.schedule import NoiseSchedule, linear_betas

pytestmark = pytest.mark.slow  # every ONNX export takes seconds


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    path, record = export_onnx(tiny_model, out, "fp32", (1, 8, 64))
    return out, path, record


def test_onnx_parity_at_batch_1_7_32(exported):
    out, path, record = exported
    assert path.is_file() and sidecar_path(path).is_file()
    assert [row["batch"] for row in record.parity] == [1, 7, 32]
    assert all(row["relative"] <= 1e-3 for row in record.parity)
    assert record.tolerance == 1e-3 and record.precision == "fp32"
    onnx.checker.check_model(str(path))


def test_token_model_exports_with_parity(tmp_path):
    model = make_tiny_model(tmp_path / "tokens", conditioning="tokens")
    _, record = export_onnx(model, tmp_path / "export", "fp32", (1, 8, 64))
    assert all(row["relative"] <= 1e-3 for row in record.parity)


def test_model_with_a_refinement_head_exports_with_parity(tmp_path):
    model = make_tiny_model(tmp_path / "refine", refine=8)
    _, record = export_onnx(model, tmp_path / "export", "fp32", (1, 8, 64))
    assert all(row["relative"] <= 1e-3 for row in record.parity)


def test_metadata_round_trip(exported, tiny_model):
    _, path, record = exported
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["checkpoint_sha256"] == checkpoint_sha256(tiny_model) == record.checkpoint_sha256
    _, card = load_model(tiny_model)
    assert ModelCard.from_json(meta["model_card"]) == card
    assert UNetIO(**json.loads(meta["io"])) == UNetIO(batch_min=1, batch_opt=8, batch_max=64)
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["checkpoint_sha256"] == record.checkpoint_sha256 and sidecar["parity"] == record.parity


def _export_backends():
    """ort always; openvino where it is installed (the dev extra installs it)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return ["ort", pytest.param("openvino", marks=pytest.mark.skip(reason="openvino is not installed"))]
    return ["ort", "openvino"]


@pytest.mark.parametrize("name", _export_backends())
def test_export_backend_eps_within_the_parity_tolerance(exported, tiny_model, name):
    out, _, record = exported
    device = torch.device("cpu")
    io = UNetIO(batch_min=1, batch_opt=8, batch_max=64)
    inputs = io.random_inputs(7, torch.Generator().manual_seed(3))
    args = [inputs[key] for key in io.input_names]
    reference = open_backend("torch", tiny_model, device)(*args)
    eps = open_backend(name, tiny_model, device, export_dir=out)(*args)
    relative = float((eps - reference).norm() / reference.norm())
    assert eps.shape == reference.shape and relative <= record.tolerance


@pytest.mark.parametrize("name", _export_backends())
def test_sampling_through_an_export_equals_torch(exported, tiny_model, name):
    out, _, _ = exported
    device = torch.device("cpu")
    schedule = NoiseSchedule(linear_betas())
    cond = torch.eye(24)[[1, 9, 22]]
    settings = SampleSettings("ddim", 4, guidance=2.0, batch_size=3)
    images = {
        backend: generate(
            open_backend(backend, tiny_model, device, export_dir=out),
            schedule,
            cond,
            image_seeds(0, 3),
            settings,
        )
        for backend in ("torch", name)
    }
    assert torch.allclose(images["torch"], images[name], atol=1e-3)


def test_mismatched_exports_are_refused(exported, tmp_path):
    out, path, _ = exported
    other = make_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(UsageError, match="no .onnx export"):
        find_export(out, other, ".onnx")
    with pytest.raises(UsageError, match="was exported from checkpoint"):
        open_backend("ort", other, torch.device("cpu"), export_dir=path)  # the sidecar's record
    with pytest.raises(UsageError, match="holds a graph exported from checkpoint"):
        make_backend("ort", other, torch.device("cpu"), export_file=path)  # the graph's own record


def test_batch_outside_the_profile(exported, tiny_model):
    out, _, _ = exported
    backend = open_backend("ort", tiny_model, torch.device("cpu"), export_dir=out)
    with pytest.raises(UsageError, match="outside the ONNX export's profile 1:8:64"):
        backend(torch.zeros(65, 3, 64, 64), torch.zeros(65, dtype=torch.long), torch.zeros(65, 24))
    assert parse_batch_profile("1:8:64") == (1, 8, 64)
    with pytest.raises(UsageError, match="MIN:OPT:MAX"):
        parse_batch_profile("8:4")
    with pytest.raises(UsageError, match="1 <= MIN <= OPT <= MAX"):
        parse_batch_profile("8:4:2")


def test_tensorrt_engine_matches_torch(exported, tiny_model):
    pytest.importorskip(
        "tensorrt", reason="TensorRT is not installed (it cannot be on the project's machines)"
    )
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from fastddpm.backends.tensorrt_backend import TrtBackend
    from fastddpm.export.tensorrt_build import build_engine

    out, path, _ = exported
    plan = build_engine(path)
    cuda = torch.device("cuda")
    x, t, cond = (
        torch.randn(7, 3, 64, 64, device=cuda),
        torch.randint(0, 1000, (7,), device=cuda),
        torch.zeros(7, 24, device=cuda),
    )
    reference = open_backend("torch", tiny_model, cuda)(x, t, cond)
    assert torch.allclose(TrtBackend(plan, cuda)(x, t, cond), reference, atol=1e-3)


def test_trt_without_tensorrt_names_the_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    from fastddpm.export.tensorrt_build import import_tensorrt

    with pytest.raises(UsageError, match=r"pip install 'fastddpm\[trt\]'"):
        import_tensorrt()


def test_an_export_is_chosen_by_what_it_records_not_its_name(exported, tmp_path):
    import shutil

    out, path, _ = exported
    other = make_tiny_model(tmp_path / "other", seed=1)
    folder = tmp_path / "exports"
    other_path, _ = export_onnx(other, folder, "fp32", (1, 8, 64))
    assert find_export(folder, other, ".onnx") == other_path
    shutil.copy(path, other_path)  # the tiny model's graph renamed onto the other model's export
    with pytest.raises(UsageError, match="not the file its sidecar describes"):
        find_export(other_path, other, ".onnx")
    with pytest.raises(UsageError, match="no .onnx export"):
        find_export(folder, other, ".onnx")


def test_several_precisions_are_listed_not_picked(exported, tiny_model, tmp_path):
    import shutil

    out, path, record = exported
    folder = tmp_path / "two"
    folder.mkdir()
    for precision in ("fp32", "bf16"):
        target = folder / path.name.replace("fp32", precision)
        shutil.copy(path, target)
        sidecar_path(target).write_text(
            json.dumps({**json.loads(sidecar_path(path).read_text()), "precision": precision})
        )
    with pytest.raises(UsageError, match=r"holds 2 .onnx exports of this model: .*\(bf16\), .*\(fp32\)"):
        find_export(folder, tiny_model, ".onnx")
    assert find_export(folder / path.name, tiny_model, ".onnx") == folder / path.name


def test_bf16_is_refused_before_any_work_where_onnxruntime_has_no_bf16_kernels(tiny_model, tmp_path):
    import onnxruntime

    from fastddpm.export.onnx_export import PrecisionUnavailable

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: bf16 can be checked here")
    with pytest.raises(
        PrecisionUnavailable, match="--precision bf16: ONNX Runtime's CPU provider has no bf16"
    ):
        export_onnx(tiny_model, tmp_path / "out", "bf16", device="cpu")
    assert not (tmp_path / "out").exists()


def test_fp16_sanity_is_judged_against_the_fp32_reference(tiny_model, tmp_path):
    """The tiny untrained model's images are near-blank in every precision: that is no fault of the export."""
    _, record = export_onnx(tiny_model, tmp_path, "fp16", (1, 2, 4), device="cpu")
    assert record.sanity["reference_std"] > 0 and record.sanity["finite"]
    assert record.sanity["std"] >= min(0.05, 0.5 * record.sanity["reference_std"])
