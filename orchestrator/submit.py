"""Studies as Ray jobs: ``scalesweep submit``, ``status JOB`` and ``logs JOB`` through the Ray Jobs API.

A submitted study is the command ``python -m orchestrator.cli run SPEC --address auto [--results R]`` run by the
cluster's head in a runtime environment made of

- the current directory as ``working_dir`` (your specs and data files, so relative paths in a spec mean on the cluster
  what they mean here), less results, reports, virtual environments, Git data and caches; Ray also skips what
  ``.gitignore`` / ``.rayignore`` name, and refuses a package over 512 MiB (the size of a GCS message);
- this scalesweep's packages as ``py_modules`` when they are not in that directory, so the job runs the code you
  submitted, not whatever revision the nodes installed.

Results must outlive the job: a relative results path would land in the job's temporary copy of the working
directory, so ``submit`` asks for an absolute path or a bucket URI. Whether that path is shared by every node is
checked on the cluster, where its mounts can be seen (`orchestrator.storage`).

The dashboard address is the one given, else ``$RAY_API_SERVER_ADDRESS`` / ``$RAY_ADDRESS`` (Ray's own order); unlike
Ray's client, an explicit address wins over those variables. A cluster with token authentication (Ray >= 2.59 turns
it on for clusters it starts) needs its token here too: ``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH``, or
``~/.ray/auth_token``, the places Ray itself looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import time
import urllib.parse
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.progress import format_duration
from sweeps.errors import InputError

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

PACKAGES = ("sweeps", "models", "orchestrator", "analysis")
EXCLUDES = [
    "results/",
    "report/",
    ".venv/",
    "venv/",
    ".git/",
    "__pycache__/",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".ipynb_checkpoints/",
]
ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


class SubmitError(InputError):
    """A submission or a job query the user must fix (address, token, spec location, results location)."""


def submit_study(spec: str, *, address: str, results: str | None) -> str:
    """Submit the study `spec` (a spec file under the current directory, or a ready-made study's name) to the
    cluster whose dashboard is at `address`; return the submission id (``raysubmit_…``)."""
    from sweeps.studies import resolve_spec

    workdir = Path.cwd().resolve()
    study = resolve_spec(spec)
    location = results or study.results
    if location is None or not ("://" in location or Path(location).expanduser().is_absolute()):
        shown = location or study.results_path
        raise SubmitError(
            f"results location {shown!r} is relative, so on the cluster it would land in the job's temporary copy of "
            f"{workdir}: give --results an absolute path on shared storage or s3:// / gs:// (or set 'results' in the "
            "spec)"
        )
    command = ["python", "-m", "orchestrator.cli", "run", _spec_argument(spec, workdir), "--address", "auto"]
    if results:
        command += ["--results", results]
    client = _client(address)
    try:
        return client.submit_job(
            entrypoint=shlex.join(command), runtime_env=_runtime_env(workdir), metadata={"study": study.name}
        )
    except ValueError as err:  # Ray's refusal to upload a package (too large, unreadable)
        raise SubmitError(f"cannot ship {workdir} with the job: {_first_line(err)}") from None
    except RuntimeError as err:
        raise SubmitError(f"the cluster at {address} refused the job: {_first_line(err)}") from None


def job_status(job_id: str, *, address: str | None) -> str:
    """A few lines: the job's status and study, Ray's message, when it started and ended."""
    info = _job_info(_client(address), job_id)
    study = (info.metadata or {}).get("study")
    lines = [f"{job_id}: {info.status.value}" + (f" (study {study})" if study else "")]
    if info.message:
        lines.append(f"  {_first_line(info.message)}")
    if info.start_time:
        started = info.start_time / 1000
        times = f"  started {_clock(started)}"
        if info.end_time:
            times += f", ended {_clock(info.end_time / 1000)} after {format_duration(info.end_time / 1000 - started)}"
        else:
            times += f", running for {format_duration(time.time() - started)}"
        lines.append(times)
    return "\n".join(lines)


def job_logs(job_id: str, *, address: str | None, follow: bool) -> Iterator[str]:
    """The job's output so far; with `follow`, chunk by chunk until the job ends."""
    client = _client(address)
    _job_info(client, job_id)  # an unknown id gets one clear line, not an error from inside the log stream
    if not follow:
        yield client.get_job_logs(job_id)
        return
    yield from _drive(client.tail_job_logs(job_id))


def _spec_argument(spec: str, workdir: Path) -> str:
    """How the job names the spec: a file by its path inside the shipped directory, a ready-made study by name."""
    path = Path(spec)
    if not path.exists():
        return spec
    try:
        return path.resolve().relative_to(workdir).as_posix()
    except ValueError:
        raise SubmitError(
            f"{spec}: the spec file must be inside the directory shipped with the job ({workdir}); "
            "run submit from a directory that contains it"
        ) from None


def _runtime_env(workdir: Path) -> dict[str, object]:
    env: dict[str, object] = {"working_dir": str(workdir), "excludes": EXCLUDES}
    code_root = Path(__file__).resolve().parents[1]
    if code_root != workdir:
        env["py_modules"] = [str(code_root / package) for package in PACKAGES]
    return env


def _client(address: str | None) -> JobSubmissionClient:
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    address = address or next((os.environ[v] for v in ADDRESS_VARIABLES if os.environ.get(v)), None)
    if not address:
        raise SubmitError("no Ray cluster given: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    check_dashboard_url(address)
    token = _auth_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        with _without(ADDRESS_VARIABLES):  # Ray's client would let these override the address it is given
            return JobSubmissionClient(address, headers=headers)
    except ConnectionError:
        raise SubmitError(
            f"no Ray dashboard answers at {address}: is the cluster up, and is `ray dashboard cluster.yaml` "
            "forwarding it?"
        ) from None
    except AuthenticationError:
        raise SubmitError(
            f"the cluster at {address} wants its authentication token: run `ray get-auth-token` on the head and put "
            "the token in ~/.ray/auth_token or $RAY_AUTH_TOKEN here"
        ) from None


def check_dashboard_url(address: str) -> None:
    """Refuse, at once, an address that is not a dashboard URL: Ray's client reads a bare HOST:PORT or ``auto`` as
    the cluster's GCS and waits for it for most of a minute before a traceback."""
    try:
        url = urllib.parse.urlsplit(address)
        url.port  # noqa: B018 - parsing the port is the check (a malformed one raises)
    except ValueError as err:
        raise SubmitError(
            f"--address {address!r} is not a URL ({err}): give the dashboard's, e.g. http://HEAD:8265"
        ) from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise SubmitError(
            f"--address {address!r} is not the Ray dashboard's URL: give it as http://HEAD:8265 (the dashboard's port; "
            "a bare HOST:PORT or 'auto' is the cluster's internal address, which submit does not use)"
        )


def _auth_token() -> str | None:
    """The token Ray would use here (its own order of places), or None; none at all when auth is disabled."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def _job_info(client: JobSubmissionClient, job_id: str) -> JobDetails:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as err:  # the Jobs API answers an unknown id with 404
        raise SubmitError(f"{job_id}: {_first_line(err)}") from None


def _drive(chunks: AsyncGenerator[str, None]) -> Iterator[str]:
    """Iterate an async iterator from plain code, one event-loop turn per chunk, so output shows as it arrives."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(anext(chunks))
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(chunks.aclose())  # closes the websocket when the reader stops early
        loop.close()


@contextlib.contextmanager
def _without(names: tuple[str, ...]) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _first_line(message: object) -> str:
    lines = str(message).strip().splitlines()
    return lines[0] if lines else ""


def _clock(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))
