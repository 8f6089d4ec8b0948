"""`python -m textxfer ...` is the `textxfer` command."""
import sys

from textxfer.commands.cli import main

sys.exit(main())
