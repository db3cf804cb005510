"""Stage a: versions, the GPU, and an import of everything later stages need, so that a missing piece fails in
seconds while a retry is still affordable."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from pathlib import Path

from campaign.context import StageContext

NEEDED_MODULES = (
    "torch", "torchvision", "triton", "diffusers", "safetensors", "onnx", "onnxscript", "onnxruntime",
    "typer", "rich", "PIL", "numpy", "matplotlib", "pytest", "hypothesis",
    "fastddpm.bench.run", "fastddpm.export.onnx_export", "fastddpm.training.loop", "fastddpm.data.writer",
)  # fmt: skip


def preflight(ctx: StageContext) -> dict:
    """Versions, the GPU, and an import of everything later stages need: a missing piece fails in seconds."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        a = torch.randn(256, 256, device="cuda")
        info |= {
            "gpu": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_free_gib": round(free / 2**30, 1),
            "memory_total_gib": round(total / 2**30, 1),
            "matmul_ok": bool(torch.allclose((a @ a).cpu(), a.cpu() @ a.cpu(), atol=1e-2, rtol=1e-2)),
        }
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        info["driver"] = smi.stdout.strip() or smi.stderr.strip()[:200]
    versions, missing = {}, []
    for name in NEEDED_MODULES:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "ok")
        except Exception as err:  # noqa: BLE001 - any import failure is what this stage reports
            missing.append(f"{name} ({type(err).__name__}: {str(err)[:80]})")
    import onnxruntime

    info |= {"modules": versions, "ort_providers": onnxruntime.get_available_providers()}
    info["course_labels"] = [p.name for p in course_label_files(ctx)]
    ctx.save(**info)
    if missing:
        raise RuntimeError(f"missing: {', '.join(missing)}")
    if not ctx.dry_run and not info["cuda_available"]:
        raise RuntimeError("no CUDA device (torch.cuda.is_available() is False)")
    if not ctx.dry_run and len(info["course_labels"]) < 2:
        raise RuntimeError(f"the course's test.json and new_test.json are not in {ctx.labels_dir}")
    return info


def course_label_files(ctx: StageContext) -> list[Path]:
    folder = ctx.labels_dir
    return [folder / f"{n}.json" for n in ("test", "new_test") if folder and (folder / f"{n}.json").is_file()]
