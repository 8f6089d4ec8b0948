"""`python -m textxfer.train RECIPE [key=value ...]`, also under `accelerate launch -m textxfer.train`.

The training loop itself lives in `textxfer.trainer`; this module is only the entry point, so that
`from textxfer import train` (the function) and `-m textxfer.train` (this script) do not collide.
"""
import sys

from textxfer.commands.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
