"""fastddpm: conditional DDPM on i-CLEVR — train, sample fast, export, and score with the course evaluator."""

__version__ = "0.1.0"
