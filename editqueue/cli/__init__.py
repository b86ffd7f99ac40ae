from editqueue.cli.main import main

__all__ = ["main"]
