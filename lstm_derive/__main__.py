"""The lstm-derive command (python -m lstm_derive too): cli.main, where a Ctrl-C while cli itself
loads ends as one in main() does, not in a traceback from an import."""

import sys


def main():
    try:
        from . import cli
    except KeyboardInterrupt:
        print("lstm-derive: interrupted", file=sys.stderr)
        return 130
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
