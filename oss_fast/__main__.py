"""`python -m oss_fast` and the `oss-fast` command.

Ctrl-C while torch and the package are still being imported (the first seconds) is one line and
exit code 130, like a Ctrl-C later on (oss_fast/cli.py): nothing heavy is imported before this.
"""

import sys


def main(argv=None) -> int:
    try:
        from .cli import main as run

        return run(argv)
    except KeyboardInterrupt:  # before the command's own handling is in place
        print("oss-fast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
