"""``fmtc book-settings``: write the repository URL into the book, the README and the notebooks."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc book-settings``."""
    parser = subparsers.add_parser(
        "book-settings", help="write [project.urls] Repository into the book config, the "
                              "README badges and the notebooks' Colab install cells",
        description="Generate the book's repository/issues/launch buttons, the README's "
                    "launch badges and every notebook's Colab install cell from the one "
                    "repository setting, [project.urls] Repository in pyproject.toml.")
    parser.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                        help="the source tree (default: the current folder)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a file is out of date")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Sync (or check) and list the files that changed."""
    from fmtc.report.launch import repository_url, sync

    changed = sync(args.root, check=args.check)
    url = repository_url(args.root)
    verb = "out of date" if args.check else "updated"
    for path in changed:
        print(f"[fmtc book-settings] {verb}: {path}")
    if not changed:
        print(f"[fmtc book-settings] every file carries {url}")
    return 1 if (args.check and changed) else 0
