"""`codex-cassette faults CASSETTE [options] -- CMD...`: any client, every fault."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import UsageError
from harness.format.ci_output import append_step_summary
from harness.format.report_formats import FORMAT_HELP, FORMATS


DESCRIPTION = (
    "Derive the fault variants of a cassette (crash, hang-up, stall, error, drop, duplicate, garbage, "
    "unknown notification or request, novel value, delay), run CMD once per variant with a `codex` shim "
    "serving it first on PATH ($CODEX_BIN names it too), and print the matrix point x fault -> "
    "survived / hung / crashed. Exit code 1 when a variant hung or crashed; 2 when the client fails "
    "the clean cassette or the arguments are wrong.")


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kinds", default="all", metavar="K,...", help="fault kinds to derive (default all)")
    p.add_argument("--max", type=int, default=None, metavar="N",
                   help="run at most N variants, drawn evenly across kinds (seeded: see --seed)")
    p.add_argument("--seed", default="0", help="the sampling seed (default 0): same seed, same variants")
    p.add_argument("--deadline", type=float, default=10.0, metavar="SECONDS",
                   help="seconds a client has to end under a fault before it counts as hung (default 10)")
    p.add_argument("--quiet", type=float, default=None, metavar="S",
                   help="seconds in which the client's process tree uses no CPU and moves no byte after "
                        "the fault before it counts as hung, without waiting for the deadline "
                        "(default 2; 0: the deadline alone decides; docs/faults.md)")
    p.add_argument("--format", choices=FORMATS, default="text", help=FORMAT_HELP)
    p.add_argument("--write-variants", type=Path, default=None, metavar="DIR",
                   help="write every variant cassette here (each replays alone: codex-cassette replay)")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="variants run at a time (default 1)")
    p.add_argument("--schema-diff", nargs=2, type=Path, default=None, metavar=("OLD", "NEW"),
                   help="two schema snapshots: novel values are what NEW adds (default: schema-free ones)")


def cli_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faults", help="run a client command once per fault variant of a cassette",
                       description=DESCRIPTION)
    _add_options(p)
    # Options may follow CASSETTE, and CMD follows `--`: both are read from here by run().
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="CASSETTE [options] -- CMD ...",
                   help="the cassette, then (options may follow it) `--` and the client command to run")
    p.set_defaults(func=run)


def _split(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    rest = list(args.rest)
    cut = rest.index("--") if "--" in rest else len(rest)
    head, command = rest[:cut], rest[cut + 1:]
    inner = argparse.ArgumentParser(prog="codex-cassette faults", description=DESCRIPTION)
    inner.add_argument("cassette", metavar="CASSETTE")
    _add_options(inner)
    defaults = {k: v for k, v in vars(args).items() if k not in ("rest", "func")}
    inner.set_defaults(**defaults)
    return inner.parse_args(head), command


def run(args: argparse.Namespace) -> int:
    from harness.faults.catalogue import catalogue, parse_kinds, sample
    from harness.faults.matrix import SweepResult, render
    from harness.faults.runner import Sweep
    from harness.faults.variants import FaultTiming
    from harness.format.load import open_cassette

    args, command = _split(args)
    if not command:
        raise UsageError("no client command: put it after `--`, e.g. "
                         "`codex-cassette faults session.jsonl -- python my_client.py`")
    if args.deadline <= 0 or args.jobs < 1 or (args.max is not None and args.max < 0) or (args.quiet or 0) < 0:
        raise UsageError("--deadline must be positive, -j at least 1, --max and --quiet not negative")
    cassette = open_cassette(args.cassette)
    novelties = None
    if args.schema_diff is not None:
        from harness.faults.novelty import SchemaDiffNovelties

        novelties = SchemaDiffNovelties.load(*args.schema_diff)
    faults = catalogue(cassette, parse_kinds(args.kinds), novelties)
    faults = sample(faults, args.max, args.seed, salt=Path(args.cassette).name)
    if args.write_variants is not None:
        args.write_variants.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="codex-faults-"))
    try:
        sweep = Sweep(cassette, command, workdir, FaultTiming(args.deadline), args.write_variants)
        if args.quiet is not None:
            sweep.quiet = args.quiet
        clean = sweep.clean_run()
        if clean.failed or clean.exit_code != 0 or clean.server:
            why = clean.server or clean.message() + (f", exit code {clean.exit_code}" if clean.exit_code else "")
            raise UsageError(f"the client does not pass the clean cassette {args.cassette} ({why}); a sweep "
                             "needs a client that gets through the session when nothing goes wrong")
        started = time.monotonic()
        verdicts = sweep.run(faults, args.jobs, _progress(len(faults)))  # a CI log shows progress too
        result = SweepResult(cassette, command, args.deadline, args.jobs, time.monotonic() - started,
                             clean, verdicts)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(render(result, args.format))
    append_step_summary(render(result, "markdown"))
    return 1 if result.failed else 0


def _progress(total: int):
    done = [0]

    def show(verdict) -> None:
        done[0] += 1
        print(f"[{done[0]}/{total}] {verdict.id}: {verdict.outcome} ({verdict.seconds:.1f} s)",
              file=sys.stderr, flush=True)
    return show
