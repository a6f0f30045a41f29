"""``python -m trio_timehttp``: the same as the ``trio-timehttp`` command."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
