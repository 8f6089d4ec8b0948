"""`python -m textxfer.predict RUN INPUT -o OUTPUT [options]`: batch prediction, the same as
`textxfer predict`, and also under `accelerate launch -m textxfer.predict ...`, where the processes
share the batches and the main process writes the rows in input order (textxfer.inference.batch).
"""
import sys

from textxfer.commands.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
