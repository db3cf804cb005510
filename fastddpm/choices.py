"""Every named choice as a str Enum, torch-free: the library checks values against these and the CLI lists them
in --help. (SamplerName must equal the sampler registry's names; samplers.py checks that at import.)"""

from __future__ import annotations

from enum import StrEnum

from fastddpm.errors import UsageError


class Choice(StrEnum):
    """A named choice; `Choice.check(value, option)` refuses anything else with the list of valid names."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def check(cls, value: str, option: str) -> str:
        if value not in cls.names():
            raise UsageError(f"{option} {value!r} is not one of {', '.join(cls.names())}")
        return value


Device = Choice("Device", {"auto": "auto", "cpu": "cpu", "cuda": "cuda"})
Precision = Choice("Precision", {n: n for n in ("fp32", "fp16", "bf16")})
Dtype = Choice("Dtype", {"auto": "auto", **{n: n for n in Precision.names()}})  # a precision, or auto
Amp = Choice("Amp", {"auto": "auto", "bf16": "bf16", "fp16": "fp16", "off": "off"})
Schedule = Choice("Schedule", {"linear": "linear", "cosine": "cosine"})
Prediction = Choice("Prediction", {"epsilon": "epsilon", "v": "v"})
Conditioning = Choice("Conditioning", {"multihot": "multihot", "tokens": "tokens"})
SamplerName = Choice("SamplerName", {n: n for n in ("ddpm", "ddim", "dpmpp", "unipc")})
BackendName = Choice("BackendName", {n: n for n in ("torch", "compile", "ort", "openvino", "trt")})
Spacing = Choice(
    "Spacing", {n: n for n in ("leading", "trailing", "linspace", "quadratic", "logsnr", "karras")}
)
Weighting = Choice("Weighting", {"eps": "eps", "x-trunc-snr": "x-trunc-snr"})
