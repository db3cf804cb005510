"""fastddpm: conditional DDPM on i-CLEVR — train, sample fast, export, and score with the course evaluator."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Pipeline imports torch: loaded on first use so `import fastddpm` and `fastddpm --help` stay fast.
    if name == "Pipeline":
        from fastddpm.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'fastddpm' has no attribute {name!r}")
