"""``wheelmeld audit PROJECT``: list the releases whose wheels disagree about their requirements.

Exit status: 0 every release is consistent; 1 some release's wheels disagree (or conflict);
3 none disagree but some wheel's metadata could not be read; 2 bad arguments, configuration, or
the project page could not be had.
"""

from __future__ import annotations

import argparse
import asyncio

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from proxy.commands import report_error
from proxy.errors import ConfigError, WheelmeldError
from proxy.tools.audit import adhoc_prefix, audit_project, render_json, render_table
from proxy.tools.options import PRECEDENCE, add_cache_options, tool_config, writable_cache_dir

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "audit",
        help="list a project's releases whose wheels declare different requirements",
        description="Meld every release of PROJECT and list the ones whose wheels disagree. Exit 0: "
        f"consistent; 1: inconsistent releases found; 3: some metadata unreadable; 2: error. {PRECEDENCE}",
    )
    parser.add_argument("project", help="project name")
    parser.add_argument("--index", help="simple index URL (default: the index your uv/pip use)")
    parser.add_argument("--versions", help="only versions in this specifier set, e.g. '>=2.5,<2.7'")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    add_cache_options(parser, routes=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        versions = SpecifierSet(args.versions) if args.versions else None
    except InvalidSpecifier as exc:
        raise ConfigError(f"--versions is not a version specifier: {args.versions!r}") from exc
    try:
        config = tool_config(args)
    except ConfigError:
        if args.index is None:
            raise
        # No default route can be built here, but the audit names its index itself: an ad-hoc route.
        config = tool_config(
            argparse.Namespace(**{**vars(args), "route": [f"{adhoc_prefix(args.index)}={args.index}"]})
        )
    index = args.index
    if index is None:
        from proxy.default_index import DefaultIndexError, discover_default_index

        try:
            index = discover_default_index().url
        except DefaultIndexError as exc:
            raise ConfigError(f"no default index: {exc}; pass --index URL") from exc
    writable_cache_dir(config.cache_dir, "audit")
    try:
        report = asyncio.run(audit_project(config, args.project, index, versions))
    except WheelmeldError as exc:
        return report_error(args, exc.reason)
    print(render_json(report) if args.json else render_table(report))
    return report.exit_code()
