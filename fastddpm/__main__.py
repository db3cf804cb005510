"""`python -m fastddpm ...` (what `torchrun -m fastddpm train ...` launches on each rank)."""

from fastddpm.cli import main

main()
