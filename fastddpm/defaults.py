"""Defaults shared by the library and the CLI, in a module light enough for `fastddpm --help` to import."""

# Classifier-free guidance scale used by every command unless told otherwise (chosen on validation label sets,
# never on the test splits: see checkpoints/default/MODEL_CARD.md).
DEFAULT_GUIDANCE = 2.0

# The real i-CLEVR training set: 6,003 scenes of 1 to 3 objects (one image per object count).
ICLEVR_SCENES = 6003
ICLEVR_MAX_OBJECTS = 3
# Image names hold the scene id in six digits (CLEVR_train_000123_0.png), so a render holds at most 10**6 scenes.
MAX_SCENES = 1_000_000
# Seeds up to 2**32 - 1 (as numpy takes them): per-image seeds seed * 1000003 + i then stay within torch's int64.
MAX_SEED = 2**32 - 1
# Images per step or per fixed-shape chunk: far above any GPU's memory, low enough to refuse a typo at once.
MAX_BATCH = 65_536
