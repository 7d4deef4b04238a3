"""Protocol drift checks: the `drift` and `validate` commands.

The work lives beside each concept: snapshot (generate + normalise), shapes,
reach, verdicts and schema_diff (the structural differ), impact and
schema_report (what a diff means for a set of cassettes, rendered), validate
(cassette messages against a snapshot), coverage (which methods cassettes
exercise), compare and rerecord (behaviour drift).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.drift import coverage, impact, schema_diff, schema_report
from harness.drift.snapshot import GENERATE_TIMEOUT_S, load_snapshot, snapshot
from harness.drift.validate import validate_inputs
from harness.format.ci_output import append_step_summary
from harness.format.pins import default_schema
from harness.format.report_formats import FORMAT_HELP, FORMATS
from harness.live.binary import CODEX_BIN_HELP, CODEX_BIN_METAVAR, find_codex_binary


def cmd_snapshot(args: argparse.Namespace) -> int:
    res = snapshot(str(find_codex_binary(args.codex_bin)), args.output,
                   experimental=args.experimental, timeout=args.timeout)
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in res.methods.items())
    print(f"codex {res.version}: {res.files} files, {res.bytes / 1e6:.1f} MB -> {res.out_dir} "
          f"({counts})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    diff = schema_diff.diff_snapshots(load_snapshot(args.old), load_snapshot(args.new))
    hits = impact.impacts(diff, impact.load_all(args.cassettes)) if args.cassettes else None
    sys.stdout.write(schema_report.render(diff, args.format, hits))
    append_step_summary(schema_report.render(diff, "markdown", hits))
    failing = diff.count("breaking") + (diff.count("risky") if args.fail_on == "risky" else 0)
    return 1 if failing else 0


def cmd_coverage(args: argparse.Namespace) -> int:
    cov = coverage.coverage(args.paths, load_snapshot(args.schema))
    sys.stdout.write(coverage.render(cov, args.format))
    append_step_summary(coverage.render(cov, "markdown"))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    snap = load_snapshot(args.schema or default_schema(args.paths))
    result = validate_inputs(args.paths, snap)
    for p in result.problems + result.deliberate:
        print(p)
    print(result.summary())
    append_step_summary(result.markdown())
    return 1 if result.problems else 0


def cmd_rerecord(args: argparse.Namespace) -> int:
    from harness.drift.rerecord import run_cli  # needs the live kit; load it only for this command
    return run_cli(args)


def cli_register(subparsers: Any) -> None:
    drift = subparsers.add_parser("drift", help="protocol drift: schema snapshots, diffs, coverage")
    dsub = drift.add_subparsers(dest="drift_command", metavar="CHECK")
    dsub.required = True

    p = dsub.add_parser("schema-snapshot", help="normalised JSON Schema of a codex binary")
    p.add_argument("--codex-bin", metavar=CODEX_BIN_METAVAR, help=CODEX_BIN_HELP)
    p.add_argument("-o", "--output", metavar="DIR", help="directory (default: cassettes/schema/<version>)")
    p.add_argument("--experimental", action="store_true",
                   help="also write the experimental surface under DIR/experimental/")
    p.add_argument("--timeout", type=float, default=GENERATE_TIMEOUT_S,
                   help="seconds the generator may take (default %(default)s)")
    p.set_defaults(func=cmd_snapshot)

    p = dsub.add_parser("schema", help="compare two snapshots; exit 1 on a breaking change")
    p.add_argument("old", metavar="OLD", help="the snapshot directory of the old codex (cassettes/schema/<version>)")
    p.add_argument("new", metavar="NEW", help="the snapshot directory of the new codex")
    p.add_argument("--format", choices=FORMATS, default="text", help=FORMAT_HELP)
    p.add_argument("--fail-on", choices=("breaking", "risky"), default="breaking",
                   help="lowest severity that makes the exit code 1")
    p.add_argument("--cassettes", action="append", default=[], metavar="DIR",
                   help="cassettes (files or directories, repeatable): list first the breaking and risky "
                        "changes that touch what they use")
    p.set_defaults(func=cmd_schema)

    p = dsub.add_parser("coverage", help="which methods of a schema the cassettes exercise")
    p.add_argument("paths", nargs="+", metavar="PATH", help="cassettes or directories of them")
    p.add_argument("--schema", required=True, metavar="DIR", help="snapshot directory")
    p.add_argument("--format", choices=FORMATS, default="text", help=FORMAT_HELP)
    p.set_defaults(func=cmd_coverage)

    p = dsub.add_parser("rerecord", help="re-record live cassettes against a codex and compare",
                        description="Play each live cassette's client side against the real codex (offline, "
                                    "the mock model from the cassette's header) while recording, then compare "
                                    "old and new structurally. Exit 1 when one drifted (without --update).")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="cassettes, or directories searched for *.jsonl recorded live")
    p.add_argument("--codex-bin", default=None, metavar=CODEX_BIN_METAVAR, help=CODEX_BIN_HELP)
    p.add_argument("--update", action="store_true", help="replace each drifted cassette by its new recording")
    p.add_argument("--format", choices=FORMATS, default="text", help=FORMAT_HELP)
    p.add_argument("--timeout", type=float, default=3.0,
                   help="longest wait for one expected codex message before it counts as missing (default 3)")
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help="also keep the new recordings here, under each cassette's relative path")
    p.add_argument("--floating", action="append", default=[], metavar="METHOD",
                   help="another notification method codex sends unprompted, matched wherever it arrives")
    p.add_argument("--ignore", action="append", default=[], metavar="PATH",
                   help="a field path whose changes are not drift (shell-style pattern over the dotted path, "
                        "e.g. result.data or '*.moderation'; covers what is below it; repeatable)")
    p.set_defaults(func=cmd_rerecord)

    v = subparsers.add_parser("validate", help="validate cassette messages against a schema snapshot")
    v.add_argument("paths", nargs="+", metavar="PATH",
                   help="cassettes (.jsonl), YAML scenarios (.yaml), or directories of them")
    v.add_argument("--schema", default=None, metavar="DIR",
                   help="snapshot directory (default: schema/<version> beside the cassettes, or "
                        "cassettes/schema/<version>, where <version> is the codex most of them were recorded with)")
    v.set_defaults(func=cmd_validate)

