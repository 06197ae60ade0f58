"""``python -m mailsac``: see :mod:`mailsac.cli`."""

from mailsac.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
