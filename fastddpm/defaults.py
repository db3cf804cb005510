"""Defaults shared by the library and the CLI, in a module light enough for `fastddpm --help` to import."""

# Classifier-free guidance scale used by every command unless told otherwise (chosen on validation label sets,
# never on the test splits: see checkpoints/default/MODEL_CARD.md).
DEFAULT_GUIDANCE = 2.0
