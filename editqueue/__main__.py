"""`python -m editqueue` runs the CLI."""

from editqueue.cli.main import main

main()
