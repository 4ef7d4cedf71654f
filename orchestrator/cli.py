"""The ``scalesweep`` command line: run, plan, status, probe, fit, report, recommend.

Bad input (a spec that does not validate, a corpus too small for the grid, a results directory that does not exist)
prints one line ``scalesweep: error: …`` and exits with code 2 before anything starts or is written. ``fit``,
``report`` and ``recommend`` dispatch to `analysis` and never start Ray, so they work on a machine that only has the
results.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeps.base import SpecError
from sweeps.errors import InputError
from sweeps.studies import load_spec, resolve_spec

EXIT_BAD_INPUT = 2
JOB_PREFIX = "raysubmit_"  # the Ray Jobs API's submission ids
WAIT_HELP = "if another driver is running these results, wait for it to end (default: refuse, exit 2)"


class UsageError(InputError):
    """Input the user must fix; printed as one line, exit code 2."""


def _cmd_run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.spec)  # validate before importing torch and ray: a bad spec fails in a blink
    if args.results:
        spec = spec.model_copy(update={"results": args.results})
    return _run(spec, args)


def _cmd_resume(args: argparse.Namespace) -> int:
    saved = Path(args.results) / "spec.yaml"
    if not saved.is_file():
        raise UsageError(f"{args.results}: no spec.yaml here; give the results directory of a study that was started")
    spec = load_spec(saved).model_copy(update={"results": str(Path(args.results))})
    return _run(spec, args)


def _run(spec: Any, args: argparse.Namespace) -> int:
    from orchestrator.study import run_study

    result = run_study(spec, address=args.address, max_concurrent=args.max_concurrent, wait=args.wait)
    print(result.summary())
    if result.failed:
        print(
            f"scalesweep: {result.failed} {result.noun} failed; their rows in {result.results} have status "
            "'failed' and an error column; rerun the same command to retry them",
            file=sys.stderr,
        )
    if result.without_row:
        print(
            f"scalesweep: {result.without_row} {result.noun} ended without a row (a process died past its retries, "
            "or Ray lost it: see the lines above and the Ray logs); rerun the same command to run them again",
            file=sys.stderr,
        )
    return 1 if result.failed or result.without_row else 0


def _cmd_plan(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.spec)  # validate before importing torch and ray: a bad spec fails in a blink
    if args.results:
        spec = spec.model_copy(update={"results": args.results})
    from orchestrator.results import ResultsDir
    from orchestrator.study import plan_text

    print(f"study {spec.name} → {ResultsDir.at(spec.results_path).uri}")
    print(plan_text(spec))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    if args.results.startswith(JOB_PREFIX):
        from orchestrator.submit import job_status

        print(job_status(args.results, address=args.address))
        return 0
    from orchestrator.status import status_text

    location = args.results
    if not Path(location).exists() and "://" not in location:
        try:
            location = resolve_spec(location).results_path
        except SpecError:
            raise UsageError(f"{args.results}: no such results directory or spec") from None
    print(status_text(location, strict=args.strict))
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    resolve_spec(args.spec)  # a bad spec is refused here, not on the cluster
    from orchestrator.submit import submit_study

    job_id = submit_study(args.spec, address=args.address, results=args.results)
    print(job_id)
    print(
        f"follow it with: scalesweep status {job_id} --address {args.address}  |  scalesweep logs {job_id}",
        file=sys.stderr,
    )
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from orchestrator.submit import job_logs

    for chunk in job_logs(args.job, address=args.address, follow=args.follow):
        print(chunk, end="", flush=True)
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from orchestrator.results import ResultsDir

    results = ResultsDir.at(args.results)
    if not results.is_local or not Path(results.uri).is_dir():
        raise UsageError(f"{args.results}: no such local results directory")
    from orchestrator.probes import pending_checkpoints, probe_checkpoints
    from orchestrator.study import start_ray

    pending = pending_checkpoints(results)
    if not pending:
        print(f"no probe checkpoint without a probe row in {results.uri}")
        return 0
    print(f"probing {len(pending)} checkpoint(s) …", file=sys.stderr, flush=True)
    start_ray(args.address)
    summary = probe_checkpoints(results, pending)
    print(summary.line())
    return 1 if summary.failed else 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from analysis.cli import FitRequest, fit_main

    request = FitRequest(
        form=args.form,
        law=args.law,
        by=tuple(args.by) if args.by else None,
        n=args.n,
        e_given=args.E,
        weight_by_se=args.weight_by_se,
        drop_highest=args.drop_highest,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
    )
    return fit_main(args.results, request=request, out=args.out, strict=args.strict)


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.cli import report_main

    return report_main(args.results, out_dir=args.output, strict=args.strict, n_bootstrap=args.bootstrap)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from analysis.cli import recommend_main

    return recommend_main(
        args.results,
        flops=args.flops,
        loss=args.loss,
        as_json=args.json,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        strict=args.strict,
    )


def _cmd_schema(args: argparse.Namespace) -> int:
    from sweeps.tables import markdown

    print(markdown(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalesweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a study (skips trials that already finished)")
    run.add_argument("spec", help="spec file, or a ready-made study in sweeps/ (smoke, laptop, isoflop, …)")
    run.add_argument("--address", help="join a running Ray cluster (e.g. 'auto' on a cluster node)")
    run.add_argument("--results", help="results location (overrides the spec's 'results')")
    run.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    run.add_argument("--wait", action="store_true", help=WAIT_HELP)
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser("resume", help="finish the unfinished trials of a study from its results directory")
    resume.add_argument("results", help="results directory (holds the spec.yaml the study was run with)")
    resume.add_argument("--address", help="join a running Ray cluster")
    resume.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    resume.add_argument("--wait", action="store_true", help=WAIT_HELP)
    resume.set_defaults(func=_cmd_resume)

    plan = sub.add_parser("plan", help="dry run: print every cell, its size and compute, without training")
    plan.add_argument("spec")
    plan.add_argument("--results", help="results location to read statuses from")
    plan.set_defaults(func=_cmd_plan)

    status = sub.add_parser("status", help="counts and a per-trial table from a results directory")
    status.add_argument("results", help="results directory, a spec (meaning its results), or a Ray job id")
    status.add_argument("--address", help="Ray dashboard address, for a job id (default: $RAY_ADDRESS)")
    status.add_argument("--strict", action="store_true", help="stop at an unreadable file instead of skipping it")
    status.set_defaults(func=_cmd_status)

    probe = sub.add_parser("probe", help="run the curvature probes of saved probe checkpoints that have no row yet")
    probe.add_argument("results", help="results directory (local or NFS)")
    probe.add_argument("--address", help="join a running Ray cluster")
    probe.set_defaults(func=_cmd_probe)

    fit = sub.add_parser("fit", help="fit scaling laws to a results directory")
    fit.add_argument("results")
    fit.add_argument(
        "--by",
        nargs="+",
        help="fit one law per group of these columns or dotted config settings such as train.lr (default: every "
        "setting that varies among the trials, e.g. init_rate, init_std, weight_decay)",
    )
    fit.add_argument(
        "--form",
        default="joint",
        help="joint: L(N, D) (default); or one variable: N (parameters), D (tokens) or C (compute)",
    )
    fit.add_argument(
        "--law",
        default="auto",
        help="auto (default: the identified form that best predicts the largest size from the others), free, shared "
        "(α = β), e-given, e-given-shared",
    )
    fit.add_argument(
        "--n",
        help="which N: with-head (default: non-embedding + LM head, the N of C = 6ND), non-embedding, total",
    )
    fit.add_argument(
        "--E",
        type=float,
        help="give E (nats/token) instead of fitting it (default for a synthetic "
        "corpus: its exact entropy rate, offered as a candidate form)",
    )
    fit.add_argument("--weight-by-se", action="store_true", help="weight points by 1/(eval_loss_se/loss)^2")
    fit.add_argument("--drop-highest", type=int, default=0, help="leave out the k highest losses (Epoch drop 5)")
    fit.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    fit.add_argument("--out", help="write the fit table here (Parquet and JSON)")
    fit.add_argument("--strict", action="store_true")
    fit.set_defaults(func=_cmd_fit)

    report = sub.add_parser("report", help="write an HTML + Markdown report with plots")
    report.add_argument("results")
    report.add_argument("-o", "--output", default="report", help="output directory (default: report)")
    report.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per fit (default 1000)")
    report.add_argument("--strict", action="store_true")
    report.set_defaults(func=_cmd_report)

    recommend = sub.add_parser(
        "recommend", help="the compute-optimal N, D, model shape, loss and cost at a budget, from each approach"
    )
    recommend.add_argument("results")
    recommend.add_argument("--flops", type=float, help="the compute budget C in FLOPs (6·N·D, LM head included)")
    recommend.add_argument("--loss", type=float, help="instead: the budget at which the joint law reaches this loss")
    recommend.add_argument("--json", action="store_true", help="one JSON object per group, one per line")
    recommend.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per fit (default 1000)")
    recommend.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    recommend.add_argument("--strict", action="store_true")
    recommend.set_defaults(func=_cmd_recommend)
    submit = sub.add_parser("submit", help="submit a study to a Ray cluster as a Ray job; prints the job id")
    submit.add_argument("spec", help="spec file, or a ready-made study")
    submit.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265")
    submit.add_argument("--results", help="results location on the cluster (shared storage: NFS, s3://, gs://)")
    submit.set_defaults(func=_cmd_submit)

    logs = sub.add_parser("logs", help="print the logs of a submitted study")
    logs.add_argument("job", help="job id printed by submit")
    logs.add_argument("--address", help="Ray dashboard address (default: $RAY_ADDRESS)")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    logs.set_defaults(func=_cmd_logs)

    schema = sub.add_parser("schema", help="print the columns of every results table (Markdown)")
    schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        print(
            f"scalesweep: {str(err) or 'interrupted; finished work is saved, run the same command to continue'}",
            file=sys.stderr,
        )
        return 130
    except InputError as err:
        print(f"scalesweep: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `scalesweep status ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
