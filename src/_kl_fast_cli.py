"""Entry point of the ``kl-fast`` command.

It lives outside the ``kl_fast`` package so that a Ctrl-C while NumPy and the
compiled modules load (the package import) ends the command quietly with exit
status 130, as a Ctrl-C during its work does, instead of a traceback.
"""
import sys


def main():
    try:
        from kl_fast.cli import main as run
    except KeyboardInterrupt:
        print("\nkl-fast: interrupted", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
