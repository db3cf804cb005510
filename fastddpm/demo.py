"""`fastddpm demo`: a gradio page over `fastddpm.Pipeline`. `generate` is the page's whole job as a plain function;
`build_app` lays it out (gradio is imported there only, so the library and its tests run without it)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastddpm.choices import SamplerName, Spacing
from fastddpm.conditions import CLASSES, CLASS_INDEX, class_index, validate_labels
from fastddpm.configs import format_interval, format_spacing
from fastddpm.defaults import ICLEVR_MAX_OBJECTS, MAX_SEED
from fastddpm.errors import UsageError
from fastddpm.pipeline import Pipeline, to_pil

if TYPE_CHECKING:
    import gradio as gr
    from PIL.Image import Image

MAX_IMAGES = 16
DEFAULT_SAMPLER = "dpmpp"
DEFAULT_STEPS = 10
DEFAULT_OBJECTS = ("red sphere", "cyan cube")
INSTALL_HINT = "the demo needs gradio: pip install 'fastddpm[demo]'"


@dataclass
class DemoResult:
    images: list[Image]
    seconds: float
    accuracy: float | None

    def summary(self) -> str:
        """The line the page shows under the images."""
        count = len(self.images)
        text = f"{count} image{'s' if count > 1 else ''} in {self.seconds:.2f} s"
        if self.accuracy is not None:
            text += f"; evaluator accuracy {self.accuracy:.3f}"
        return text


def objects_list(objects: Sequence[str] | str) -> list[str]:
    """The page's chosen or typed objects (or one string 'red sphere, cyan cube'), checked as the CLI checks
    --labels, in canonical spelling."""
    if isinstance(objects, str):
        objects = objects.split(",")
    labels = [name for name in objects if isinstance(name, str) and name.strip()] if objects else []
    validate_labels(labels, where="the objects", max_objects=ICLEVR_MAX_OBJECTS)
    return [CLASSES[class_index(name)] for name in labels]


def _whole(value: float | int, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or not (
        low <= value <= high
    ):
        raise UsageError(f"{name} {value!r}: give a whole number from {low} to {high}")
    return int(value)


def generate(
    pipe: Pipeline,
    objects: Sequence[str] | str,
    sampler: str = DEFAULT_SAMPLER,
    steps: float | int = DEFAULT_STEPS,
    guidance: float | None = None,
    seed: float | int = 0,
    count: float | int = 4,
    evaluator: str | Path | None = None,
    score: bool = False,
    guidance_interval: str | None = None,
    spacing: str | None = None,
) -> DemoResult:
    """`count` images of one condition (`objects`, up to 3) through `pipe`, the seconds sampling took and, with
    `score`, the evaluator's accuracy of the images for that condition. A guidance interval is `all` or 'LO-HI',
    a spacing `own` or a timestep grid's name (None or empty: the card's). Bad input raises UsageError."""
    labels = objects_list(objects)
    SamplerName.check(sampler, "sampler")
    steps = _whole(steps, "steps", 1, pipe.schedule.num_timesteps)
    settings = pipe.settings(
        sampler, steps, guidance, guidance_interval=guidance_interval or None, spacing=spacing or None
    )
    seed = _whole(seed, "seed", 0, MAX_SEED)
    conditions = [labels] * _whole(count, "images", 1, MAX_IMAGES)
    start = time.perf_counter()
    images = to_pil(pipe.generate(conditions, settings, seed))
    seconds = time.perf_counter() - start
    accuracy = pipe.score(images, conditions, evaluator) if score else None
    return DemoResult(images, seconds, accuracy)


def build_app(pipe: Pipeline, evaluator: str | Path | None = None) -> gr.Blocks:
    """The demo page for `pipe` (not launched): objects, sampler, steps, guidance, seed, images -> Generate ->
    the images and the time they took; a bad value shows its one-line message in the page."""
    import gradio as gr

    defaults = pipe.settings(DEFAULT_SAMPLER, DEFAULT_STEPS)

    def on_generate(objects, sampler, steps, guidance, interval, spacing, seed, count, score):
        try:
            result = generate(
                pipe, objects, sampler, steps, guidance, seed, count, evaluator, score, interval, spacing
            )
        except UsageError as err:
            return [], f"error: {err}"
        return result.images, result.summary()

    with gr.Blocks(title="fastddpm demo", analytics_enabled=False) as app:
        model = shown_path(pipe.model_dir)
        gr.Markdown(f"## fastddpm: conditional i-CLEVR images\nModel: `{model}` on {pipe.device}")
        with gr.Row():
            with gr.Column():
                objects = gr.Dropdown(
                    list(CLASS_INDEX),
                    value=list(DEFAULT_OBJECTS),
                    multiselect=True,
                    max_choices=ICLEVR_MAX_OBJECTS,
                    allow_custom_value=True,
                    label=f"Objects (up to {ICLEVR_MAX_OBJECTS}; pick or type '<color> <shape>')",
                    elem_id="objects",
                )
                sampler = gr.Dropdown(list(SamplerName.names()), value=DEFAULT_SAMPLER, label="Sampler")
                steps = gr.Number(DEFAULT_STEPS, label="Steps", precision=0, minimum=1)
                guidance = gr.Number(defaults.guidance, label="Guidance (1 = none)", minimum=0)
                interval = gr.Textbox(
                    format_interval(defaults.guidance_interval),
                    label="Guidance at timesteps (all, or LO-HI like 0-450)",
                )
                spacing = gr.Dropdown(
                    ["own", *Spacing.names()],
                    value=format_spacing(defaults.spacing),
                    label="Timestep grid (own: the sampler's)",
                )
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                score = gr.Checkbox(False, label="Score the images with the evaluator")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                gallery = gr.Gallery(label="Images", columns=4, format="png", object_fit="contain", elem_id="images")
                status = gr.Textbox(label="Result", interactive=False, elem_id="status")  # text, not markup
        button.click(
            on_generate,
            [objects, sampler, steps, guidance, interval, spacing, seed, count, score],
            [gallery, status],
        )
    return app


def shown_path(path: Path) -> str:
    """A path as the page shows it: relative to the working folder when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def require_gradio() -> None:
    """Refuse in one line, before any model is loaded, when gradio is not installed."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


def check_address(host: str, port: int) -> None:
    """Refuse an unknown host or a port already taken, before any model is loaded."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except socket.gaierror:
        raise UsageError(f"--host {host!r} is not a name or address of this machine") from None
    except OSError as err:
        raise UsageError(f"--port {port} on {host}: {err.strerror or err}; choose a free port") from None


def serve(pipe: Pipeline, host: str, port: int, share: bool, evaluator: str | Path | None = None) -> None:
    """Build the page and serve it until interrupted."""
    build_app(pipe, evaluator).launch(server_name=host, server_port=port, share=share, show_error=True)
