"""Print the kl_fast speed-up table: ``python bench/compare.py [--quick] [--json FILE]``.

Every ratio is the NumPy baseline's median time divided by the implementation's,
measured in the same run on the same machine.
"""
import sys

from kl_fast.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
