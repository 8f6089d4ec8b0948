"""`python -m textxfer ...` is the `textxfer` command."""
import sys

from textxfer.cli import main

sys.exit(main())
