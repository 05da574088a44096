"""`python -m unfreeze` runs the same command as the installed `unfreeze` entry point."""

from unfreeze.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
