"""`fastddpm demo`: options -> fastddpm.demo.serve (a gradio page over fastddpm.Pipeline)."""

from __future__ import annotations

from typing import Annotated

from fastddpm.cli.common import clean_errors, cpu_note, option, say
from fastddpm.cli.options import DeviceOption, EvaluatorOption, ModelDir
from fastddpm.choices import Device

Port = Annotated[int, option("Server", "Port to serve the page on.", min=1, max=65535)]
Host = Annotated[str, option("Server", "Address to listen on; 0.0.0.0 serves other machines too.")]
Share = Annotated[
    bool, option("Server", "Also open a public gradio.live link (needs internet).", "--share/--no-share")
]


@clean_errors
def demo(
    model: ModelDir = None,
    device: DeviceOption = Device.auto,
    port: Port = 7860,
    host: Host = "127.0.0.1",
    share: Share = False,
    evaluator: EvaluatorOption = None,
) -> None:
    """A web page to sample a model: pick up to 3 objects, a sampler, steps, guidance and seed, and Generate
    (needs pip install 'fastddpm[demo]')."""
    from fastddpm.demo import check_address, require_gradio, serve
    from fastddpm.paths import default_model_dir
    from fastddpm.pipeline import Pipeline

    require_gradio()
    model = model or default_model_dir()
    check_address(host, port)
    pipe = Pipeline.from_pretrained(model, device.value)
    cpu_note(device.value)
    say(f"demo of {model} on http://{host}:{port} (Ctrl+C stops it)")
    serve(pipe, host, port, share, evaluator)
