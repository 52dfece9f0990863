"""`--engine ray`: `tokenize` encoded on a Ray cluster, with the local engine's bytes.

The driver (the process that runs `dataprep tokenize --engine ray`) does four things:

1. **Plan** (`_core.tokenize_plan`): the options are validated as the local run validates them and
   the inputs are listed in the order the local engine reads them. Consecutive inputs are grouped
   into units of about `--unit-mb` MB (`plan_units`); a file larger than that is a unit of its
   own. The units depend on the inputs and `--unit-mb` only, never on the cluster.
2. **Units**: each unit not already done is one Ray Core task (`_encode_unit`: one CPU, one
   thread) that encodes its files into a unit file in the work directory and leaves a done record
   next to it (the unit's record: config hash, files, counts, the unit file's size and SHA-256).
   A rerun skips the units whose done record matches the plan and whose unit file still has that
   size and SHA-256; the rest run again.
3. **Assemble** (`_core.tokenize_assemble`, on the driver, overlapping the units): it starts
   with the first unit and pulls the unit files in plan order, each as soon as its task is done
   (or it was verified from an earlier run), while the later units still run; they become rows,
   the validation split and shards exactly as the local engine makes them, with its lock,
   journal and resume: shards and `manifest.json` are byte-identical to `dataprep tokenize`'s
   for any number of nodes and workers.
4. **Clean up**: once the manifest is committed, the unit files and done records are removed.

Failures: a data error in a unit (a corrupt input, an unreadable file) fails the run at once with
the core's message naming the input; it is returned by the task as a value, never retried (Ray's
`retry_exceptions=False`; the core's exception types do not pickle either). A lost node or a
crashed worker is a system failure that Ray retries (`max_retries`). The first failure cancels
every other task.

NOTE: Ray Core tasks and not Ray Data: a unit is a whole encode of some files into one local
file, so there is nothing to stream between operators, and Ray Data's ordering and object-store
spilling are exactly what we must not depend on. Only a unit's small JSON record travels through
the object store.

`train-bpe --engine ray` (`RayTrainBpe`) shares the units, done records and task stream
(`UnitRun`): each task counts its unit's pieces into a unit file, the driver sums them and trains
(`_core.train_bpe_merge`); with held-out documents, a documents pass first gives each unit the
corpus index of its first document.

This module does not import `ray` at import time: the local engine must never load it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dataprep import _core, bpe, remote, storage
from dataprep.export import ExportError, _Lock
from dataprep.options import defaults, plain
from dataprep.shards import MANIFEST, sha256_file
from dataprep.tokenize import PathLike, local_tokenizer, paths

if TYPE_CHECKING:
    from ray import ObjectRef

F = TypeVar("F", bound=Callable[..., Any])

ENGINES = ("local", "ray")
DEFAULT_ADDRESS = "auto"
DEFAULT_UNIT_MB = 64
MAX_UNIT_MB = 1 << 20  # 1 TB: a bound that catches a unit typed in bytes, not a real limit
# NOTE: retries are for system failures only (a node lost, a worker killed): a data error is
# returned as a value and fails the run on the first try.
MAX_RETRIES = 3
# Commands whose `--engine ray` is built; the others refuse it naming the option.
RAY_COMMANDS = ("tokenize", "train-bpe")
WORK_SUFFIX = ".work"
# Unit files, done records, document counts and their temporary names (`.NAME.tmp-PID`, as `fsutil.rs` names them).
_UNIT_FILE = re.compile(r"^\.?unit-\d{6}\.(bin|done\.json|docs\.json)(\.tmp-\d+)?$")


class RayEngineError(ValueError):
    """What the Ray engine refuses or could not do, in one line naming the option or file."""


# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineOptions:
    """Where a command runs. These options never reach the core: the manifest's `config` block
    is the same whichever engine wrote it."""

    engine: str = "local"
    """`local` (this process, all its threads) or `ray` (a Ray cluster)."""
    address: str = DEFAULT_ADDRESS
    """The Ray cluster: `auto` (the one `ray start` started on this machine, or `RAY_ADDRESS`)
    or `HOST:PORT` of its head node."""
    work_dir: str | None = None
    """Unit files and done records; every node must see it at the same path, or an
    `s3://bucket/prefix` every node reaches. Default: the output directory's sibling
    `<out>.work`."""
    unit_mb: float = DEFAULT_UNIT_MB
    """Input megabytes (10^6 bytes) per unit, whole files: a larger file is a unit of its own."""

    def check(self, command: str) -> None:
        """Refuses a value out of range, or an engine the command does not have yet.

        >>> EngineOptions(unit_mb=0).check("tokenize")
        Traceback (most recent call last):
        ...
        dataprep.ray_engine.RayEngineError: --unit-mb 0: must be more than 0 and at most 1048576
        """
        if self.engine not in ENGINES:
            raise RayEngineError(f"--engine {self.engine!r}: must be one of {', '.join(ENGINES)}")
        if not 0 < self.unit_mb <= MAX_UNIT_MB:  # also false for NaN
            raise RayEngineError(
                f"--unit-mb {self.unit_mb}: must be more than 0 and at most {MAX_UNIT_MB}"
            )
        if self.engine == "ray" and command not in RAY_COMMANDS:
            raise RayEngineError(f"--engine ray: not supported by `dataprep {command}` yet")

    def work_dir_for(self, out: PathLike) -> Path:
        """The work directory of a run writing `out`.

        >>> str(EngineOptions().work_dir_for("data/shards/"))
        'data/shards.work'
        """
        if self.work_dir is not None:
            return Path(self.work_dir)
        return Path(os.fspath(out).rstrip("/") + WORK_SUFFIX)

    def work_location(self, out: PathLike) -> tuple[str | None, Path]:
        """`(url, local)`: with `--work-dir s3://...`, the prefix and this driver's local copy
        of it (`$XDG_CACHE_HOME/dataprep/work/<bucket>/<key>`: the unit files the assemble
        reads, the lock); otherwise `(None, the work directory)`.

        >>> EngineOptions(work_dir="gs://b/w").work_location("out")
        Traceback (most recent call last):
        ...
        dataprep.ray_engine.RayEngineError: --work-dir gs://b/w: gs:// is not supported (object storage is s3:// only)
        """
        try:
            if self.work_dir is not None and storage.is_remote(self.work_dir):
                url = str(storage.S3Url.parse(self.work_dir))
                return url, Path(remote.local_path(url, "work"))
        except ValueError as e:
            raise RayEngineError(f"--work-dir {e}") from None
        return None, self.work_dir_for(out)


# The flags, defined once: `engine_options` adds them to a command, `engine_of` reads them back.
ENGINE_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "engine": (
        "--engine",
        {
            "type": click.Choice(ENGINES),
            "default": "local",
            "show_default": True,
            "help": "Where to run: this machine, or a Ray cluster (README: 'Run on a cluster').",
        },
    ),
    "address": (
        "--address",
        {
            "default": DEFAULT_ADDRESS,
            "show_default": True,
            "help": "--engine ray: the cluster's head, HOST:PORT, or `auto` (the cluster "
            "`ray start` started here, or RAY_ADDRESS).",
        },
    ),
    "work_dir": (
        "--work-dir",
        {
            "type": click.Path(),
            "help": "--engine ray: unit files and done records, a directory every node shares "
            "or an s3://bucket/prefix [default: <out>.work, removed when the output is "
            "complete].",
        },
    ),
    "unit_mb": (
        "--unit-mb",
        {
            "type": float,
            "default": DEFAULT_UNIT_MB,
            "show_default": True,
            "help": "--engine ray: input megabytes per task (whole files; a larger file is a "
            "task of its own).",
        },
    ),
}


def engine_options(f: F) -> F:
    """Adds `--engine`, `--address`, `--work-dir` and `--unit-mb` to a click command."""
    for name, (flag, kwargs) in reversed(ENGINE_FLAGS.items()):
        f = click.option(flag, name, **kwargs)(f)
    return f


def engine_of(command: str, ctx: click.Context, values: dict[str, Any]) -> EngineOptions:
    """Removes the engine flags from a command's `values` and checks them: the Ray options given
    with `--engine local` are refused, naming the option (never ignored)."""
    picked = {name: values.pop(name) for name in ENGINE_FLAGS}
    opts = EngineOptions(**picked)
    if opts.engine == "local":
        for name, (flag, _) in ENGINE_FLAGS.items():
            if name != "engine" and (
                ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
            ):
                raise RayEngineError(f"{flag} applies to --engine ray only")
    opts.check(command)
    return opts


# --- units ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """Consecutive inputs of the plan, encoded by one task into one unit file."""

    index: int
    files: tuple[tuple[str, int], ...]  # (path, bytes), in plan order

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.files)

    @property
    def name(self) -> str:
        return f"unit-{self.index:06d}"


def plan_units(inputs: Sequence[Sequence[Any]], unit_bytes: int) -> list[Unit]:
    """Groups consecutive `(path, bytes)` inputs into units of at most `unit_bytes` (a larger
    file alone). A function of the inputs and the size only, so that the output and the
    resume records are the same on any cluster.

    >>> [u.files for u in plan_units([("a", 4), ("b", 4), ("c", 9), ("d", 1)], 8)]
    [(('a', 4), ('b', 4)), (('c', 9),), (('d', 1),)]
    """
    units: list[Unit] = []
    group: list[tuple[str, int]] = []
    size = 0
    for path, n in inputs:
        if group and size + n > unit_bytes:
            units.append(Unit(len(units), tuple(group)))
            group, size = [], 0
        group.append((str(path), int(n)))
        size += int(n)
    if group:
        units.append(Unit(len(units), tuple(group)))
    return units


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _stage_own(
    stack: contextlib.ExitStack,
    files: list[str],
    listing: list[remote.Entry] | None,
    cwd: str,
    s3: Mapping[str, str] | None = None,
) -> list[remote.Listed] | None:
    """Enters the driver's working directory `cwd` (relative inputs, `--out` and work
    directory are the driver's: the same paths on every node); with remote inputs, returns the
    core's listing with this task's own objects staged in a temporary directory of this node
    (None: local inputs), read with the driver's object-storage settings `s3`
    (`storage.settings`), not this node's environment."""
    # NOTE: a node without that directory runs with absolute paths only (a relative one then
    # fails naming the file).
    if os.path.isdir(cwd):
        stack.enter_context(contextlib.chdir(cwd))
    if s3 is not None:
        stack.enter_context(storage.settings_applied(s3))
    if listing is None:
        return None
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dataprep-unit-"))
    mine = set(files)
    staged = dict(
        (name, copy) for name, _, copy in remote.stage([e for e in listing if e[0] in mine], tmp)
    )
    return [(name, size, staged.get(name)) for name, size in listing]


def _run_unit(
    command: str,
    files: list[str],
    unit_out: str,
    done_out: str,
    options: dict[str, Any],
    listing: list[remote.Entry] | None = None,
    first_index: int = 0,
    cwd: str = ".",
    s3: Mapping[str, str] | None = None,
    upload_to: str | None = None,
) -> dict[str, Any]:
    """The Ray task of a unit: `tokenize` encodes `files` into `unit_out`, `train-bpe` counts
    their pieces into it (`first_index`: the corpus index of their first document, which
    decides the held-out ones); then the done record is written. A data error comes back as
    `{"error": message}` (a value: never retried). With a `listing` (remote inputs), the unit's
    own objects are staged in a temporary directory of this node first, read with the
    driver's object-storage settings `s3`. With `upload_to` (an s3:// work directory),
    `unit_out` and `done_out` are names: both are written in a temporary directory of this
    node and uploaded there, the unit file first and the done record last."""
    try:
        with contextlib.ExitStack() as stack:
            listed = _stage_own(stack, files, listing, cwd, s3)
            names = (unit_out, done_out)
            if upload_to is not None:
                here = stack.enter_context(tempfile.TemporaryDirectory(prefix="dataprep-out-"))
                unit_out, done_out = (os.path.join(here, n) for n in names)
            if command == "tokenize":
                out = _core.tokenize_unit(
                    unit_files=files, unit_out=unit_out, listing=listed, **options
                )
            else:
                out = _core.train_bpe_unit(
                    unit_files=files,
                    first_index=first_index,
                    unit_out=unit_out,
                    listing=listed,
                    **options,
                )
            record: dict[str, Any] = json.loads(out)
            if command != "tokenize":
                record["first_index"] = first_index
            _write_atomic(Path(cwd, done_out), json.dumps(record, sort_keys=True).encode())
            if upload_to is not None:
                # The done record last: a record in the bucket means its unit file is there.
                for local, name in zip((unit_out, done_out), names, strict=True):
                    storage.upload(local, storage.join(upload_to, name))
    except (_core.DataprepError, ValueError, FileNotFoundError) as e:
        return {"error": str(e)}
    record["node"] = socket.gethostname()
    return record


def _count_documents(
    files: list[str],
    options: dict[str, Any],
    listing: list[remote.Entry] | None = None,
    cwd: str = ".",
    s3: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Ray task of `train-bpe`'s documents pass: the documents in `files`."""
    try:
        with contextlib.ExitStack() as stack:
            listed = _stage_own(stack, files, listing, cwd, s3)
            n = _core.train_bpe_documents(unit_files=files, listing=listed, **options)
    except (_core.DataprepError, ValueError, FileNotFoundError) as e:
        return {"error": str(e)}
    return {"documents": n, "node": socket.gethostname()}


# --- the driver ------------------------------------------------------------------------------


@dataclass
class UnitsDone:
    """What the units stage did: units run now, units verified from an earlier run, and when
    the last unit run now was done (seconds from the start of the run; 0 when none ran)."""

    ran: int
    skipped: int
    seconds: float


class UnitRun:
    """What every `--engine ray` command shares: the plan's units, their unit files and done
    records in the work directory (verified on a rerun), the tasks, and the stream of finished
    units in plan order (`_stream`). A command sets `command`, `work`, `config_hash`, `units`,
    `options`, `entries` and `listing`, and may record more per unit (`expected`).

    With remote inputs, each task gets the driver's object-storage settings
    (`storage.settings`: endpoint, region, keys, checksum variables) as an argument
    (`s3_settings`), so the worker nodes need no AWS_* environment. They are never printed,
    logged or written to a file.

    NOTE: a task argument, not Ray's `runtime_env={"env_vars": ...}`: Ray's runtime-env agent
    logs the serialized runtime env ("Creating runtime env: ...") in `runtime_env_agent.log` on
    every node, which would put the secret key in a file; a task's arguments are not logged.
    The settings are an argument of their own, a few hundred bytes: Ray inlines a small
    argument (under `max_direct_call_object_size`, 100 KB by default) in the task's spec
    instead of putting it in the object store (which spills to disk).

    With an s3:// work directory (`work_url`), the tasks upload their unit files and done
    records there (the record last), and `work` is this driver's local copy: the unit files
    are downloaded into it, checked against their records' SHA-256, for the assemble (or the
    merge) to read; a rerun reads the records from the bucket."""

    command: str
    engine: EngineOptions
    work: Path
    work_url: str | None = None
    config_hash: str
    units: list[Unit]
    options: dict[str, Any]
    entries: list[remote.Entry] | None
    listing: list[remote.Listed] | None

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.units)

    def s3_settings(self) -> dict[str, str] | None:
        """What the tasks reach the bucket with: the driver's settings, with remote inputs or
        an s3:// work directory only (None: the tasks touch no object, and no secret leaves the
        driver)."""
        if self.entries is None and self.work_url is None:
            return None
        return storage.settings()

    @property
    def work_name(self) -> str:
        """The work directory as the user gave it (for messages)."""
        return self.work_url or str(self.work)

    @property
    def remove_work(self) -> bool:
        """Whether the (local) work directory goes when the run is done: the default one, and
        the driver's copy of an s3:// one."""
        return self.engine.work_dir is None or self.work_url is not None

    def unit_url(self, unit: Unit) -> str:
        return storage.join(self.work_url or "", f"{unit.name}.bin")

    def done_url(self, unit: Unit) -> str:
        return storage.join(self.work_url or "", f"{unit.name}.done.json")

    def unit_path(self, unit: Unit) -> Path:
        return self.work / f"{unit.name}.bin"

    def done_path(self, unit: Unit) -> Path:
        return self.work / f"{unit.name}.done.json"

    def expected(self, unit: Unit) -> dict[str, Any]:
        """What a done record must also hold for this run, beyond the plan's (`first_index`)."""
        return {}

    def verified(self, unit: Unit) -> dict[str, Any] | None:
        """The unit's done record if it matches this plan and its unit file still has the
        recorded size and SHA-256; None when the unit must run. With an s3:// work directory,
        the record and the unit object are read from the bucket, and the unit file is
        downloaded to the driver's copy while its SHA-256 is checked (kept for the assemble)."""
        size: int | None
        try:
            if self.work_url is None:
                raw = self.done_path(unit).read_bytes()
                size = self.unit_path(unit).stat().st_size
            else:
                raw = storage.read_bytes(self.done_url(unit))
                size = storage.size(self.unit_url(unit))
            record: dict[str, Any] = json.loads(raw)
        except (OSError, ValueError):  # no record, no unit file, or not JSON
            return None
        same = (
            isinstance(record, dict)
            and record.get("config_hash") == self.config_hash
            and [tuple(f) for f in record.get("files", ())] == list(unit.files)
            and record.get("bytes") == size
            and all(record.get(k) == v for k, v in self.expected(unit).items())
        )
        if not same or self._local_copy(unit, record.get("sha256")) != record.get("sha256"):
            return None
        return record

    def _local_copy(self, unit: Unit, sha256: Any) -> str:
        """The SHA-256 of the unit file the driver reads: the work directory's, or with an
        s3:// one the driver's copy of the unit object (downloaded, unless a copy with hash
        `sha256` is already there)."""
        path = self.unit_path(unit)
        if self.work_url is None:
            return sha256_file(path)
        if path.is_file() and sha256_file(path) == sha256:
            return str(sha256)
        return storage.download(self.unit_url(unit), path)

    def where(self, unit: Unit) -> str:
        return f"{unit.name} ({unit.files[0][0]}{' ...' if len(unit.files) > 1 else ''})"

    def _check_record(self, unit: Unit, record: Mapping[str, Any]) -> None:
        """A task's record must be for this plan, and its unit file visible here."""
        if record.get("config_hash") != self.config_hash:
            raise RayEngineError(
                f"{self.where(unit)}: node {record.get('node')} ran it with config hash "
                f"{str(record.get('config_hash'))[:12]}…, the driver planned "
                f"{self.config_hash[:12]}…: install the same dataprep and tokenizer on every node"
            )
        if self.work_url is not None:
            return  # the task uploaded it; the download checks its SHA-256
        path = self.unit_path(unit)
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        if size != record.get("bytes"):
            raise RayEngineError(
                f"--work-dir {self.work}: {path.name} written on node {record.get('node')} is "
                "not visible from the driver: the work directory must be shared by every node"
            )

    def unit_files(
        self,
        on_unit: Callable[[Unit, bool], None] | None,
        stop: threading.Event | None,
        done: UnitsDone,
        t0: float,
    ) -> Generator[tuple[str, str], None, None]:
        """Every unit's `(unit file, sha256)` in plan order, each as soon as it is done: the
        units with a verified done record at once, the others run as tasks (submitted on the
        first `next`). `on_unit(unit, ran)` after each; `done` counts them."""
        known: dict[int, dict[str, Any]] = {}
        todo: list[Unit] = []
        for unit in self.units:
            record = self.verified(unit)
            if record is None:
                todo.append(unit)
            else:
                known[unit.index] = record
                if on_unit:
                    on_unit(unit, False)
        verified = set(known)
        done.ran, done.skipped = len(todo), len(self.units) - len(todo)

        def finished(unit: Unit, record: dict[str, Any]) -> None:
            self._check_record(unit, record)
            done.seconds = time.perf_counter() - t0
            if on_unit:
                on_unit(unit, True)

        # Units use one thread each (the task's one CPU); `threads` does not change the output.
        options = {**self.options, "threads": 1}
        s3 = self.s3_settings()

        def args_of(u: Unit) -> tuple[Any, ...]:
            unit_out, done_out = (
                (str(self.unit_path(u)), str(self.done_path(u)))
                if self.work_url is None
                else (self.unit_path(u).name, self.done_path(u).name)  # uploaded by the task
            )
            return (
                self.command,
                [p for p, _ in u.files],
                unit_out,
                done_out,
                options,
                self.entries,
                self.expected(u).get("first_index", 0),
                os.getcwd(),
                s3,
                self.work_url,
            )

        for unit, record in self._stream(_run_unit, todo, known, args_of, finished, stop):
            if self.work_url is not None and unit.index not in verified:
                # Run now: the driver's copy, checked against the task's record.
                storage.download(self.unit_url(unit), self.unit_path(unit), sha256=record["sha256"])
            yield str(self.unit_path(unit)), record["sha256"]

    def _stream(
        self,
        fn: Callable[..., dict[str, Any]],
        todo: list[Unit],
        known: dict[int, dict[str, Any]],
        args_of: Callable[[Unit], tuple[Any, ...]],
        finished: Callable[[Unit, dict[str, Any]], None],
        stop: threading.Event | None,
    ) -> Generator[tuple[Unit, dict[str, Any]], None, None]:
        """THE mechanism of every stage on the cluster: submits `fn(*args_of(unit))` for the
        `todo` units, then yields every unit's record in plan order (`known`: those not run),
        each as soon as it is there, recording the other units' completions (`finished`) while
        it waits. A data error, a lost task or `stop` raises (a consumer in the core ends with
        its message); every task still running is then cancelled."""
        import ray

        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(fn)
        pending: dict[ObjectRef[dict[str, Any]], Unit] = {}
        try:
            # NOTE: plan order, not largest first: the records are consumed in plan order, so
            # the first units must finish first for the consumer (the assemble) to start early;
            # the units are of about the same size by construction (a file larger than a unit
            # is the exception).
            for unit in todo:
                pending[task.remote(*args_of(unit))] = unit
            for unit in self.units:
                while unit.index not in known:
                    if stop is not None and stop.is_set():
                        raise RayEngineError("interrupted")
                    # A short timeout: `stop` is seen while a long unit runs.
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                    for ref in ready:
                        other = pending.pop(ref)
                        record = self._result(other, ref)
                        finished(other, record)
                        known[other.index] = record
                yield unit, known[unit.index]
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _result(self, unit: Unit, ref: ObjectRef[dict[str, Any]]) -> dict[str, Any]:
        import ray

        try:
            record: dict[str, Any] = ray.get(ref)
        except ray.exceptions.RayError as e:
            # Retries are spent (or the error is not retryable): name the unit and the cause.
            last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            raise RayEngineError(
                f"{unit.name} ({unit.files[0][0]}): failed on the cluster (system failures are "
                f"retried {MAX_RETRIES} times): {type(e).__name__}: {last}"
            ) from None
        if "error" in record:
            raise _core.DataprepError(record["error"])
        return record

    def clean_up(self) -> None:
        """Removes the unit files, done records and document counts, and what killed tasks left
        (the output is complete: they are not needed any more). Nothing else in the work
        directory. With an s3:// work directory, its unit objects and done records too (the
        records first: a record never names a removed unit file)."""
        if self.work_url is not None:
            names = [n for n, _ in storage.list_files(self.work_url) if _UNIT_FILE.match(n)]
            for name in sorted(names, key=lambda n: not n.endswith(".done.json")):
                storage.delete(storage.join(self.work_url, name))
        if not self.work.is_dir():
            return
        for p in self.work.iterdir():
            if _UNIT_FILE.match(p.name):
                p.unlink(missing_ok=True)


class RayTokenize(UnitRun):
    """One `tokenize --engine ray` run (the CLI shows its stages; `tokenize` runs them all).

    Args:
        inputs, tokenizer, out, options: As `dataprep.tokenize` takes them.
        engine: The engine options (`engine="ray"`).
    """

    command = "tokenize"

    def __init__(
        self,
        inputs: PathLike | Sequence[PathLike],
        tokenizer: PathLike,
        out: PathLike,
        engine: EngineOptions,
        **options: Any,
    ) -> None:
        engine.check("tokenize")
        opts = plain(options)
        if opts.get("dedup", "none") != "none":
            raise RayEngineError("--dedup: not supported with --engine ray yet")
        ins = paths(inputs)
        # A remote `out` is built in a local directory and uploaded after the manifest is
        # written there (`storage.upload_set`: the manifest last); remote inputs are listed here
        # and staged by each unit's task (`_run_unit`).
        self.dest = os.fspath(out)
        local_out = (
            remote.local_path(self.dest, "outputs") if storage.is_remote(self.dest) else self.dest
        )
        opts.update(inputs=ins, tokenizer=local_tokenizer(tokenizer), out=local_out)
        self.entries = remote.listing(ins) if remote.any_remote(ins) else None
        self.listing = None if self.entries is None else remote.unstaged(self.entries)
        self.options = opts
        self.engine = engine
        self.out = Path(opts["out"])
        self.work_url, self.work = engine.work_location(self.out)
        plan = json.loads(_core.tokenize_plan(listing=self.listing, **opts))
        self.config_hash = plan["config_hash"]
        self.units = plan_units(plan["inputs"], max(1, int(engine.unit_mb * 1_000_000)))
        # A complete output is the local engine's business: it checks it and returns it.
        self.complete = (self.out / MANIFEST).exists()

    def build(
        self,
        progress: _core.Progress | None = None,
        on_unit: Callable[[Unit, bool], None] | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[dict[str, Any], UnitsDone]:
        """Runs every unit without a verified done record on the cluster (connected with
        `connect`) and builds the shards on this machine as the units come in: the assemble
        takes unit k as soon as it is done, while the later ones still run. `on_unit(unit, ran)`
        after each unit (`ran=False`: verified from an earlier run); `stop` set: the run ends
        (the tasks are cancelled, finished units and shards kept). Raises on the first data
        error or lost task, after cancelling the other tasks. Returns the manifest and what the
        units did (`seconds`: when the last unit was done, from the start of this call)."""
        t0 = time.perf_counter()
        self.work.mkdir(parents=True, exist_ok=True)
        done = UnitsDone(0, 0, 0.0)
        units = self.unit_files(on_unit, stop, done, t0)
        try:
            manifest: dict[str, Any] = json.loads(
                _core.tokenize_assemble(
                    units=units, progress=progress, listing=self.listing, **self.options
                )
            )
        finally:
            units.close()  # the tasks still running are cancelled (an error of the assemble)
        self.upload()
        return manifest, done

    def upload(self) -> None:
        """A remote `out`: the complete local build uploaded, the manifest last."""
        if storage.is_remote(self.dest):
            storage.upload_set(self.out, self.dest)

    def finish_complete(self, progress: _core.Progress | None = None) -> dict[str, Any]:
        """The manifest of an output that is already complete, checked by the local engine (it
        checks every shard against it, and refuses other options). What a run killed between
        its manifest and its clean-up left in the work directory is removed."""
        manifest: dict[str, Any] = json.loads(
            _core.tokenize(progress=progress, listing=self.listing, **self.options)
        )
        self.upload()
        if self.work_url is not None or self.work.is_dir():
            with work_lock(self.work, remove=self.remove_work):
                self.clean_up()
        return manifest


class RayTrainBpe(UnitRun):
    """One `train-bpe --engine ray` run: each unit's pieces counted by a task into a unit file,
    the counts summed and the merges trained on the driver (`_core.train_bpe_merge`): the
    tokenizer files are byte-identical to `dataprep train-bpe`'s for any cluster.

    Args:
        inputs, options: As `dataprep.train_bpe` takes them (`out`: where to write
            `tokenizer.json`; a local path or s3://, built here and uploaded).
        engine: The engine options (`engine="ray"`).
    """

    command = "train-bpe"

    def __init__(
        self, inputs: PathLike | Sequence[PathLike], engine: EngineOptions, **options: Any
    ) -> None:
        engine.check("train-bpe")
        opts = plain(options)
        ins = paths(inputs)
        self.dest: str | None = None if opts.get("out") is None else os.fspath(opts["out"])
        if self.dest is None and engine.work_dir is None:
            raise RayEngineError(
                "--engine ray: train-bpe needs --out (its work directory is <out>.work) or "
                "--work-dir"
            )
        # As `dataprep.bpe.train_bpe`: a remote `out` is written here and uploaded, the
        # tokenizer.json last; remote inputs are staged by each task, never on the driver.
        if self.dest is not None:
            opts["out"] = (
                remote.local_path(self.dest, "outputs")
                if storage.is_remote(self.dest)
                else self.dest
            )
        opts["inputs"] = ins
        self.entries = remote.listing(ins) if remote.any_remote(ins) else None
        self.listing = None if self.entries is None else remote.unstaged(self.entries)
        self.options = opts
        self.engine = engine
        self.work_url, self.work = engine.work_location(opts["out"] if opts.get("out") else "")
        plan = json.loads(_core.train_bpe_plan(listing=self.listing, **opts))
        self.config_hash = plan["config_hash"]
        self.units = plan_units(plan["inputs"], max(1, int(engine.unit_mb * 1_000_000)))
        self.holdout_every = int((defaults("train-bpe") | opts)["holdout_every"] or 0)
        self.first_index: list[int] = [0] * len(self.units)

    def expected(self, unit: Unit) -> dict[str, Any]:
        return {"first_index": self.first_index[unit.index]}

    def docs_path(self, unit: Unit) -> Path:
        return self.work / f"{unit.name}.docs.json"

    def count_documents(self, stop: threading.Event | None = None) -> int:
        """With `holdout_every > 0`: the documents of every unit (a task per unit, the counts
        kept in the work directory for a rerun), hence each unit's `first_index`. Returns the
        units that were counted now.

        NOTE: a documents pass rather than a chain (unit k waits for the documents of unit
        k-1): the pass reads and parses the inputs once more but runs on every CPU, where a
        chain would run the units one after another. Measured (8.2 MB of enwiki, one thread):
        documents 0.01-0.02 s (500-580 MB/s), counting 0.16-0.23 s (35-52 MB/s): the pass
        costs 6-10% of the counting, a chain would cost the cluster's parallelism."""
        if self.holdout_every <= 0:
            return 0
        known: dict[int, dict[str, Any]] = {}
        todo: list[Unit] = []
        for unit in self.units:
            try:
                cached = json.loads(self.docs_path(unit).read_bytes())
            except (OSError, ValueError):
                cached = None
            if (
                isinstance(cached, dict)
                and cached.get("config_hash") == self.config_hash
                and [tuple(f) for f in cached.get("files", ())] == list(unit.files)
            ):
                known[unit.index] = cached
            else:
                todo.append(unit)

        def finished(unit: Unit, record: dict[str, Any]) -> None:
            cache = {"config_hash": self.config_hash, "files": unit.files, **record}
            _write_atomic(self.docs_path(unit), json.dumps(cache, sort_keys=True).encode())

        options = {**self.options, "threads": 1}
        s3 = self.s3_settings()
        first = 0
        for unit, record in self._stream(
            _count_documents,
            todo,
            known,
            lambda u: ([p for p, _ in u.files], options, self.entries, os.getcwd(), s3),
            finished,
            stop,
        ):
            self.first_index[unit.index] = first
            first += int(record["documents"])
        return len(todo)

    def build(
        self,
        progress: _core.Progress | None = None,
        on_unit: Callable[[Unit, bool], None] | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[_core.Tokenizer, dict[str, Any], UnitsDone]:
        """Counts the units not verified from an earlier run on the cluster (connected with
        `connect`; after the documents pass, with `holdout_every > 0`), then sums the counts
        and trains here. Returns the tokenizer, the stats of `dataprep.train_bpe` and what the
        units did."""
        t0 = time.perf_counter()
        self.work.mkdir(parents=True, exist_ok=True)
        self.count_documents(stop)
        done = UnitsDone(0, 0, 0.0)
        units = self.unit_files(on_unit, stop, done, t0)
        try:
            # NOTE: the merge needs every unit's counts before it trains: nothing to overlap.
            finished = list(units)
        finally:
            units.close()
        tok, stats = _core.train_bpe_merge(
            units=finished, progress=progress, listing=self.listing, **self.options
        )
        if self.dest is not None and storage.is_remote(self.dest):
            stats["outputs"] = bpe.upload_outputs(stats["outputs"], self.dest)
        return tok, stats, done


@contextlib.contextmanager
def work_lock(work: Path, remove: bool = False, command: str = "tokenize") -> Iterator[None]:
    """One driver per work directory (the lock protocol of every dataprep output). The work
    directory is removed on the way out when nothing is left in it, if `remove` or if this call
    created it."""
    created = remove or not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        lock = _Lock(work, f"dataprep {command} --engine ray")
    except ExportError as e:
        raise RayEngineError(f"--work-dir {e}") from None
    try:
        yield
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                work.rmdir()


def _reachable(address: str) -> str | None:
    """Why nothing answers at `HOST:PORT` (None when something does)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return "not HOST:PORT or auto"
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as e:
        return e.strerror or str(e)


@contextlib.contextmanager
def connect(address: str) -> Iterator[None]:
    """Connects this process to the Ray cluster at `address` (unless it already is connected),
    and disconnects when done. No cluster there: one line naming `--address`."""
    # NOTE: ray.init retries an address where nothing listens for minutes (GCS reconnects), so
    # an explicit HOST:PORT is probed first.
    if address != "auto" and not address.startswith("ray://") and (why := _reachable(address)):
        raise RayEngineError(
            f"--address {address}: no Ray cluster there ({why}); start one with "
            "`ray start --head` or give the head's HOST:PORT"
        )
    try:
        import ray
    except ImportError:
        raise RayEngineError(
            "--engine ray: Ray is not installed here (pip install 'dataprep[ray]')"
        ) from None

    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RayEngineError(f"--address {address}: {first}") from None
    try:
        yield
    finally:
        ray.shutdown()


def cluster_summary() -> str:
    """The connected cluster's size, in words: `3 nodes, 3 CPUs (and 1 without CPUs)`. Nodes
    without CPUs (a head started with `--num-cpus 0`) run no units."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    working = sum(1 for n in alive if n.get("Resources", {}).get("CPU", 0) > 0)
    cpus = int(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
    idle = len(alive) - working
    return f"{working} node{'s' * (working != 1)}, {cpus} CPU{'s' * (cpus != 1)}" + (
        f" (and {idle} without CPUs)" if idle else ""
    )


def tokenize(
    inputs: PathLike | Sequence[PathLike],
    tokenizer: PathLike,
    out: PathLike,
    *,
    address: str = DEFAULT_ADDRESS,
    work_dir: PathLike | None = None,
    unit_mb: float = DEFAULT_UNIT_MB,
    progress: _core.Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`dataprep.tokenize` on a Ray cluster: the same shards and manifest, byte for byte.

    Every node must see the inputs, the tokenizer and `work_dir` at the same paths (a shared
    file system); the output is written by this process. Rerunning the same call resumes: units
    with a verified done record are not run again, and the assemble step resumes as the local
    engine does.

    Args:
        inputs, tokenizer, out, **options: As `dataprep.tokenize`.
        address: The cluster (`auto`, or the head's `HOST:PORT`); a process already connected
            (`ray.init`) uses its connection.
        work_dir: Unit files and done records [default: `<out>.work`, removed at the end].
        unit_mb: Input megabytes per unit (whole files).
        progress: A `Progress` for the assemble step.

    Returns:
        The manifest.

    Example (with a cluster running, `ray start --head`)::

        from dataprep import ray_engine
        m = ray_engine.tokenize("wiki/", "tok.json", "shards/", seq_len=2048)

    >>> tokenize("wiki/", "tok.json", "shards/", unit_mb=0)
    Traceback (most recent call last):
    ...
    dataprep.ray_engine.RayEngineError: --unit-mb 0: must be more than 0 and at most 1048576
    """
    engine = EngineOptions(
        "ray", address, None if work_dir is None else os.fspath(work_dir), unit_mb
    )
    engine.check("tokenize")
    run = RayTokenize(inputs, tokenizer, out, engine, **options)
    if run.complete:
        manifest = run.finish_complete(progress)
    else:
        with work_lock(run.work, remove=run.remove_work):
            with connect(address):
                manifest, _ = run.build(progress)
            run.clean_up()
    return manifest


def train_bpe(
    inputs: PathLike | Sequence[PathLike],
    vocab_size: int | None = None,
    *,
    address: str = DEFAULT_ADDRESS,
    work_dir: PathLike | None = None,
    unit_mb: float = DEFAULT_UNIT_MB,
    progress: _core.Progress | None = None,
    **options: Any,
) -> tuple[_core.Tokenizer, dict[str, Any]]:
    """`dataprep.train_bpe` on a Ray cluster: the same tokenizer files, byte for byte.

    Every node must see the inputs and `work_dir` at the same paths (a shared file system) or
    read the inputs from object storage; the tokenizer is trained and written by this process.
    A rerun skips the units with a verified done record.

    Args:
        inputs, vocab_size, **options: As `dataprep.train_bpe` (`out` or `work_dir` needed).
        address, work_dir, unit_mb: As `tokenize`.
        progress: A `Progress` for the merge step.

    Returns:
        The tokenizer and the stats `dataprep.train_bpe` returns.
    """
    engine = EngineOptions(
        "ray", address, None if work_dir is None else os.fspath(work_dir), unit_mb
    )
    engine.check("train-bpe")
    if vocab_size is not None:
        options["vocab_size"] = vocab_size
    run = RayTrainBpe(inputs, engine, **options)
    with work_lock(run.work, remove=run.remove_work, command="train-bpe"):
        with connect(address):
            tok, stats, _ = run.build(progress)
        run.clean_up()
    return tok, stats
