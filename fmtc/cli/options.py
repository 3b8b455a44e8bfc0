"""Options shared by several sub-commands (plan file and profile)."""

from __future__ import annotations

import argparse

from fmtc.plan import Plan, load_plan


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--profile`` and ``--plan`` to a sub-command."""
    parser.add_argument("--profile", default=None,
                        help="profile of the experiment plan (smoke, quick, paper, or your own)")
    parser.add_argument("--plan", default=None, metavar="YAML",
                        help="plan file overriding the built-in profiles (default: ./_config.yml)")


def plan_from_args(args: argparse.Namespace, overrides: dict | None = None) -> Plan:
    """Resolve the plan named by ``--profile`` / ``--plan`` with command-line overrides."""
    return load_plan(args.profile, args.plan, overrides=overrides)
