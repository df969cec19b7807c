"""The `latentlab` command: the team stack, pulling a team's results, and the pipeline's tools.

Each verb is a thin call into the layer that does the work, so the make targets, the README and the
tests all go through the same entry point. A user error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from latentlab.runtime.errors import LatentlabError


def _stack_parser(sub) -> None:
    stack = sub.add_parser("stack", help="the team stack: object store, PostgreSQL, MLflow server")
    verbs = stack.add_subparsers(dest="verb", required=True, metavar="{up,down,status,env,connect}")
    for verb, text in (("up", "start what is not running, and what it needs"),
                       ("down", "stop what is running")):
        cmd = verbs.add_parser(verb, help=text, description=text)
        cmd.add_argument("services", nargs="*", metavar="SERVICE", help="db, s3 or mlflow (default: all)")
    verbs.add_parser("status", help="one line per service", description="one line per service")
    verbs.add_parser("env", help="`export MLFLOW_TRACKING_URI=...`, for eval",
                     description="print the shell line that points MLflow at the stack, for `eval`")
    conn = verbs.add_parser("connect", help="point this clone's DVC remote `team` at the stack (or --url)",
                            description="write this clone's DVC remote `team` into .dvc/config.local and "
                                        "print the shell line for MLflow, for `eval`")
    conn.add_argument("--url", help="another S3 remote, e.g. s3://bucket/path, instead of the stack")
    conn.add_argument("--endpoint", help="with --url: the S3 server's address, when it is not AWS")
    conn.add_argument("--tracking-uri", help="with --url: the team's MLflow server")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="latentlab", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True, metavar="{stack,pull,repro,store}")
    _stack_parser(sub)
    store = sub.add_parser("store", help="check the DVC remote's objects against dvc.lock (and repair them)")
    store_verbs = store.add_subparsers(dest="verb", required=True, metavar="{check}")
    check = store_verbs.add_parser("check", help="re-hash, in the store, every object dvc.lock needs",
                                   description="re-hash, in the default DVC remote, every object dvc.lock needs "
                                               "(folder listings and their files included); name the damaged "
                                               "and missing ones")
    check.add_argument("--repair", action="store_true",
                       help="re-upload the damaged and missing ones from this clone's cache, where it holds good copies")
    check.add_argument("--rev", help="check what dvc.lock of this git revision needs (default: the workspace's)")
    sub.add_parser("pull", help="`dvc pull` when a DVC remote is configured and reachable (one line if not)",
                   description="fetch outputs a team already computed, from this clone's DVC remote; "
                               "one line and exit 0 when there is none or it does not answer")
    repro = sub.add_parser("repro", help="pull what the team computed, then run the stale stages, several at once",
                           description="`latentlab pull`, then every stale stage (of the targets, default: all) "
                                       "in a `dvc repro --single-item` of its own, independent ones at the same time")
    repro.add_argument("targets", nargs="*", metavar="STAGE", help="stages or groups, as `dvc repro` takes them")
    repro.add_argument("-j", "--jobs", type=int, help="stages at once (default: cores / params.yaml's threads)")
    repro.add_argument("-f", "--force", action="store_true", help="run the stages even if they are up to date")
    return top


def _stack(args) -> int:
    from latentlab import stack
    from latentlab.runtime.paths import repo_root

    if args.verb == "up":
        stack.up(services=args.services or None)
    elif args.verb == "down":
        stack.down(services=args.services or None)
    elif args.verb == "status":
        print("\n".join(stack.status()))
    elif args.verb == "env":
        print("\n".join(stack.env_lines()))
    else:
        for line in stack.connect_clone(repo_root(), args.url, args.endpoint, args.tracking_uri):
            print(line)
    return 0


def _repro(args) -> int:
    from latentlab.cli import parallel
    from latentlab.cli.remote import pull_if_reachable
    from latentlab.runtime import params
    from latentlab.runtime.paths import repo_root

    root = repo_root()
    os.chdir(root)  # DVC's paths and the stage logs are the checkout's
    if args.jobs is not None and args.jobs < 1:
        raise LatentlabError(f"--jobs {args.jobs}: must be at least 1")
    jobs = args.jobs or parallel.default_jobs(params.load(root / "params.yaml")["threads"])
    pull_if_reachable(root)
    return parallel.run(parallel.plan(root, args.targets, args.force), jobs, args.force)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "stack":
            return _stack(args)
        if args.command == "pull":
            from latentlab.cli.remote import pull_if_reachable
            from latentlab.runtime.paths import repo_root

            return pull_if_reachable(repo_root())
        if args.command == "store":
            from latentlab.cli import store
            from latentlab.runtime.paths import repo_root

            report = store.check_store(repo_root(), repair=args.repair, rev=args.rev)
            print("\n".join(store.describe(report, args.repair)))
            broken = set(report.damaged + report.missing) - set(report.repaired)
            return 1 if broken else 0
        return _repro(args)
    except LatentlabError as exc:
        print(f"latentlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
