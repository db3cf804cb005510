"""The `fastddpm distill` loop: run (or resume) every stage of the method (method.py) in a run folder whose
bookkeeping is run.py's DistillRun."""

from __future__ import annotations

import time

from torch import nn

from fastddpm.distill.config import DistillConfig
from fastddpm.distill.method import Stage, loss_of
from fastddpm.distill.run import DistillRun
from fastddpm.training.loop import StopRequest, TrainResult
from fastddpm.training.run_folder import RunFolder


def train_stage(run, stage: Stage, stop: StopRequest, progress, step_limit: int | None) -> bool:
    """Optimise the stage's student until its step (or time) budget is spent; False when stopped early (by a
    signal, or at `step_limit` optimisation steps in this call)."""
    config, counters = run.config, run.counters
    total = config.stage_steps * len(config.stages())
    window = []
    while not run.stage_done():
        if stop.signum is not None or (step_limit is not None and counters.step >= step_limit):
            return False
        tick = time.perf_counter()
        for group in run.optimizer.param_groups:  # linear decay to 10% over the stage: a calmer final student
            group["lr"] = config.lr * (1 - 0.9 * run.stage_step / config.stage_steps)
        x0, cond = run.batch()
        loss = loss_of(config, stage, run.schedule, x0, cond, run.generator)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(stage.student.net.parameters(), 1.0)
        run.optimizer.step()
        counters.step, counters.images_seen = counters.step + 1, counters.images_seen + len(x0)
        run.stage_step += 1
        window.append(loss.item())
        elapsed = time.perf_counter() - tick
        counters.train_seconds += elapsed
        run.stage_seconds += elapsed
        if run.stage_step % config.log_every == 0:
            run.log(stage=stage.index, student_steps=stage.steps, loss=sum(window) / len(window))
            if progress:
                progress(counters.step, total, f"stage {stage.index} ({stage.steps or 'fold'})")
            window = []
            if time.perf_counter() - run.last_checkpoint > config.checkpoint_minutes * 60:
                run.save(stage)
    return True


def distill(
    config: DistillConfig, resume: bool = False, progress=None, step_limit: int | None = None
) -> TrainResult:
    """Run (or resume) every stage; the result's model_dir is the final student (None when stopped early)."""
    config.validate()
    folder = RunFolder(config.out, "distillation")
    folder.check_writable()  # before any work, and before the lock creates the folder's parent
    config = DistillRun.check(config, resume)
    with folder.owned():
        run = DistillRun.start(config, resume)
        with StopRequest() as stop:
            for index in range(run.stage_index, len(run.config.stages())):
                stage = run.open_stage(index)
                if not train_stage(run, stage, stop, progress, step_limit):
                    run.save(stage)
                    if stop.signum is not None:
                        run.log(event="stop", signal=stop.signum)
                    return TrainResult(None, run.counters.step, stop.signum)
                run.finish_stage(stage)
                run.save(stage)
    return TrainResult(run.out / "model", run.counters.step, None)
