"""``python -m kl_fast``: the same command as ``kl-fast``."""
import sys

from kl_fast.cli import main

if __name__ == "__main__":
    sys.exit(main())
