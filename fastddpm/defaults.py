"""Defaults shared by the library and the CLI, in a module light enough for `fastddpm --help` to import."""

# Classifier-free guidance scale used by every command unless told otherwise (chosen on validation label sets,
# never on the test splits: see checkpoints/default/MODEL_CARD.md).
DEFAULT_GUIDANCE = 2.0

# The real i-CLEVR training set: 6,003 scenes of 1 to 3 objects (one image per object count).
ICLEVR_SCENES = 6003
ICLEVR_MAX_OBJECTS = 3
