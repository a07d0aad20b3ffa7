"""``python -m grantex_local``: the ``grantex-local`` command line, where the console script is missing."""

from .cli import main

if __name__ == "__main__":
    main()
