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

from dataprep import _core, remote, storage
from dataprep.export import ExportError, _Lock
from dataprep.options import plain
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
RAY_COMMANDS = ("tokenize",)
WORK_SUFFIX = ".work"
# Unit files, done records and their temporary names (`.NAME.tmp-PID`, as `fsutil.rs` names them).
_UNIT_FILE = re.compile(r"^\.?unit-\d{6}\.(bin|done\.json)(\.tmp-\d+)?$")


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
    """Unit files and done records; every node must see it at the same path. Default: the
    output directory's sibling `<out>.work`."""
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
            "[default: <out>.work, removed when the output is complete].",
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


def _encode_unit(
    files: list[str],
    unit_out: str,
    done_out: str,
    options: dict[str, Any],
    listing: list[remote.Entry] | None = None,
) -> dict[str, Any]:
    """The Ray task: encodes `files` into `unit_out`, then writes the done record. A data error
    comes back as `{"error": message}` (a value: never retried). With a `listing` (remote
    inputs), the unit's own objects are staged in a temporary directory of this node first."""
    try:
        with contextlib.ExitStack() as stack:
            listed = None
            if listing is not None:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dataprep-unit-"))
                mine = set(files)
                staged = dict(
                    (name, copy)
                    for name, _, copy in remote.stage([e for e in listing if e[0] in mine], tmp)
                )
                listed = [(name, size, staged.get(name)) for name, size in listing]
            record: dict[str, Any] = json.loads(
                _core.tokenize_unit(unit_files=files, unit_out=unit_out, listing=listed, **options)
            )
    except (_core.DataprepError, ValueError, FileNotFoundError) as e:
        return {"error": str(e)}
    _write_atomic(Path(done_out), json.dumps(record, sort_keys=True).encode())
    record["node"] = socket.gethostname()
    return record


# --- the driver ------------------------------------------------------------------------------


@dataclass
class UnitsDone:
    """What the units stage did: units run now, units verified from an earlier run, and when
    the last unit run now was done (seconds from the start of the run; 0 when none ran)."""

    ran: int
    skipped: int
    seconds: float


class RayTokenize:
    """One `tokenize --engine ray` run, stage by stage (the CLI shows each stage; `tokenize`
    runs them all).

    Args:
        inputs, tokenizer, out, options: As `dataprep.tokenize` takes them.
        engine: The engine options (`engine="ray"`).
    """

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
        # and staged by each unit's task (`_encode_unit`).
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
        self.work = engine.work_dir_for(self.out)
        plan = json.loads(_core.tokenize_plan(listing=self.listing, **opts))
        self.config_hash: str = plan["config_hash"]
        self.units = plan_units(plan["inputs"], max(1, int(engine.unit_mb * 1_000_000)))
        # A complete output is the local engine's business: it checks it and returns it.
        self.complete = (self.out / MANIFEST).exists()

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.units)

    def unit_path(self, unit: Unit) -> Path:
        return self.work / f"{unit.name}.bin"

    def done_path(self, unit: Unit) -> Path:
        return self.work / f"{unit.name}.done.json"

    def verified(self, unit: Unit) -> dict[str, Any] | None:
        """The unit's done record if it matches this plan and its unit file still has the
        recorded size and SHA-256; None when the unit must run."""
        try:
            record: dict[str, Any] = json.loads(self.done_path(unit).read_bytes())
            size = self.unit_path(unit).stat().st_size
        except (OSError, ValueError):
            return None
        same = (
            record.get("config_hash") == self.config_hash
            and [tuple(f) for f in record.get("files", ())] == list(unit.files)
            and record.get("bytes") == size
        )
        if not same or sha256_file(self.unit_path(unit)) != record.get("sha256"):
            return None
        return record

    def _check_record(self, unit: Unit, record: Mapping[str, Any]) -> None:
        """A task's record must be for this plan, and its unit file visible here."""
        where = f"{unit.name} ({unit.files[0][0]}{' ...' if len(unit.files) > 1 else ''})"
        if record.get("config_hash") != self.config_hash:
            raise RayEngineError(
                f"{where}: node {record.get('node')} encoded it with config hash "
                f"{str(record.get('config_hash'))[:12]}…, the driver planned "
                f"{self.config_hash[:12]}…: install the same dataprep and tokenizer on every node"
            )
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
        shas: dict[int, str] = {}
        todo: list[Unit] = []
        for unit in self.units:
            record = self.verified(unit)
            if record is None:
                todo.append(unit)
            else:
                shas[unit.index] = record["sha256"]
                if on_unit:
                    on_unit(unit, False)
        done = UnitsDone(len(todo), len(self.units) - len(todo), 0.0)
        units = self._in_plan_order(todo, shas, on_unit, stop, done, t0)
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

    def _in_plan_order(
        self,
        todo: list[Unit],
        shas: dict[int, str],
        on_unit: Callable[[Unit, bool], None] | None,
        stop: threading.Event | None,
        done: UnitsDone,
        t0: float,
    ) -> Generator[tuple[str, str], None, None]:
        """Submits the `todo` units' tasks, then yields every unit's `(unit file, sha256)` in
        plan order, each as soon as it is done (`shas`: the verified ones), recording the
        other units' completions while it waits. A data error, a lost task or `stop` raises
        (the assemble ends with its message); every task still running is cancelled."""
        import ray

        # Units use one thread each (the task's one CPU); `threads` does not change the output.
        options = {**self.options, "threads": 1}
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(_encode_unit)
        pending: dict[ObjectRef[dict[str, Any]], Unit] = {}
        try:
            # NOTE: plan order, not largest first: the assemble consumes the units in plan
            # order, so the first ones must finish first for it to start early; the units are
            # of about the same size by construction (only a file larger than a unit is more).
            for unit in todo:
                ref = task.remote(
                    [p for p, _ in unit.files],
                    str(self.unit_path(unit)),
                    str(self.done_path(unit)),
                    options,
                    self.entries,
                )
                pending[ref] = unit
            for unit in self.units:
                while unit.index not in shas:
                    if stop is not None and stop.is_set():
                        raise RayEngineError("interrupted")
                    # A short timeout: `stop` is seen while a long unit runs.
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                    for ref in ready:
                        finished = pending.pop(ref)
                        record = self._result(finished, ref)
                        self._check_record(finished, record)
                        shas[finished.index] = record["sha256"]
                        done.seconds = time.perf_counter() - t0
                        if on_unit:
                            on_unit(finished, True)
                yield str(self.unit_path(unit)), shas[unit.index]
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
        if self.work.is_dir():
            with work_lock(self.work, remove=self.engine.work_dir is None):
                self.clean_up()
        return manifest

    def clean_up(self) -> None:
        """Removes the unit files and done records, and what killed tasks left (the output is
        complete: they are not needed any more). Nothing else in the work directory."""
        if not self.work.is_dir():
            return
        for p in self.work.iterdir():
            if _UNIT_FILE.match(p.name):
                p.unlink(missing_ok=True)


@contextlib.contextmanager
def work_lock(work: Path, remove: bool = False) -> Iterator[None]:
    """One driver per work directory (the lock protocol of every dataprep output). The work
    directory is removed on the way out when nothing is left in it, if `remove` or if this call
    created it."""
    created = remove or not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        lock = _Lock(work, "dataprep tokenize --engine ray")
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
        with work_lock(run.work, remove=work_dir is None):
            with connect(address):
                manifest, _ = run.build(progress)
            run.clean_up()
    return manifest
