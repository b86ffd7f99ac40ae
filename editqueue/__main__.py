"""`python -m editqueue` runs the CLI."""

from editqueue.cli import main

main()
