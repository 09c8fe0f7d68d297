"""``python -m hpo.storage upgrade [URL]``: create or upgrade the tables (for a ``migrate`` service).

The URL defaults to ``HPO_DATABASE_URL`` (then ``sqlite:///hpo.db``).
"""

from __future__ import annotations

import sys

from .._errors import SpecError
from ._errors import StorageError
from ._migrate import upgrade


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "upgrade" or len(args) > 2:
        print("usage: python -m hpo.storage upgrade [URL]", file=sys.stderr)
        return 2
    if len(args) == 2:
        url = args[1]
    else:
        from .._settings import get_settings

        url = get_settings().database_url
    try:
        print(upgrade(url).message)
    except SpecError as exc:  # a malformed URL
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
