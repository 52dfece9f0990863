"""The long fault-injection run behind RELIABILITY.md: the faults of
`tests/test_fault_injection.py`, many more times, with the figures (trials, faults injected,
outputs compared, what was lost) printed as a Markdown table and written as JSON.

    python bench/fault_injection.py --kills 25 --trainer-kills 3 --flips 300 --fuzz 2000 \\
        --json bench/fault_injection.json

FAULT_SEED (or --seed) fixes every random choice; the seed is printed first.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import faultkit as fk  # noqa: E402

import dataprep  # noqa: E402
from dataprep.shards import Manifest  # noqa: E402

DEMO = REPO / "tests" / "data" / "demo"


def kills(work: Path, corpus: Path, tok: Path, shards: Path, args: argparse.Namespace,
          rng: random.Random, seed: int) -> dict[str, Any]:  # fmt: skip
    """kill -9 at a random moment of each command, then rerun: outputs compared byte for byte."""
    rows: dict[str, Any] = {}
    for name in fk.COMMANDS:
        cmd_args = fk.command(name, corpus, tok)

        def cmd(out: Path, cmd_args: list[str] = cmd_args, name: str = name) -> list[str]:
            return fk.dataprep_cmd([*cmd_args, *fk.out_arg(name, out), "--threads", "1"])

        d = work / f"kill-{name}"
        d.mkdir()
        t = fk.kill_trials(name, cmd, d, args.kills, rng, seed, digest=fk.digest_for(name))
        rows[name] = vars(t)
        shutil.rmtree(d)
        print(f"  kill -9 {name}: {t}", flush=True)
    if args.trainer_kills:
        d = work / "kill-train"
        d.mkdir()

        def train(out: Path) -> list[str]:
            return fk.trainer_cmd([*fk.TRAINER_ARGS, "--shards", str(shards), "--out", str(out)])

        t = fk.kill_trials(
            "train (2 gloo ranks)",
            train,
            d,
            args.trainer_kills,
            rng,
            seed,
            digest=fk.trainer_digest,
            env=fk.TRAINER_ENV,
        )
        rows["train (2 gloo ranks)"] = vars(t)
        print(f"  kill -9 train: {t}", flush=True)
    return rows


def flips(work: Path, shards: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Random bit flips in shards and the tokenizer copy (checked by `Manifest.verify`, what
    `dataprep inspect` and the trainer run), every single-bit flip of manifest.json (bit 0 of
    each byte), and random flips in a checkpoint's files."""
    import torch

    from train import checkpoint

    d = Path(shutil.copytree(shards, work / "flip-shards"))
    files = sorted(p for p in d.iterdir() if p.name != "manifest.json")
    named = 0
    for _ in range(args.flips):
        victim = rng.choice(files)
        original = victim.read_bytes()
        fk.flip_byte(victim, rng)
        problems = Manifest.read(d).verify()
        named += int(any(p.startswith(f"{victim}: checksum mismatch") for p in problems))
        victim.write_bytes(original)
    out: dict[str, Any] = {"shards and tokenizer copy": {"flips": args.flips, "detected": named}}

    manifest = d / "manifest.json"
    original = manifest.read_bytes()
    text = original.decode()
    undetected: dict[str, int] = {}
    for offset in range(len(original)):
        raw = bytearray(original)
        raw[offset] ^= 1
        manifest.write_bytes(bytes(raw))
        try:
            caught = bool(Manifest.read(d).verify())
        except (ValueError, OSError, dataprep.DataprepError):
            caught = True
        if not caught:
            line = text[text.rfind("\n", 0, offset) + 1 : text.find("\n", offset)].strip()
            key = line.split(":")[0].strip('"') if ":" in line else line
            undetected[key] = undetected.get(key, 0) + 1
    manifest.write_bytes(original)
    out["manifest.json (every byte)"] = {
        "flips": len(original),
        "detected": len(original) - sum(undetected.values()),
        "undetected_by_field": dict(sorted(undetected.items(), key=lambda kv: -kv[1])),
    }

    state = {"step": 1, "model": {"w": torch.arange(4096, dtype=torch.float32)}, "data": {}}
    path = checkpoint.save(work / "ckpt", 1, state, {"step": 1, "data": {}}, keep_last=3)
    originals = {p: p.read_bytes() for p in (path / "state.pt", path / "meta.json")}
    named_ckpt = 0
    for _ in range(args.flips):
        victim = rng.choice(sorted(originals))
        fk.flip_byte(victim, rng)
        try:
            checkpoint.load(path)
        except checkpoint.CorruptCheckpoint as e:
            named_ckpt += int(victim.name in str(e))
        victim.write_bytes(originals[victim])
    out["checkpoint (state.pt, meta.json)"] = {"flips": args.flips, "detected": named_ckpt}
    return out


def full_disk(
    work: Path, corpus: Path, tok: Path, rng: random.Random, limits: int
) -> dict[str, Any]:
    """RLIMIT_FSIZE at `limits` sizes around the sizes of the outputs, for tokenize (a fresh
    directory, resumed after the failure: the result must be the uninterrupted run's), train-bpe
    and dedup (over a complete earlier output, which must survive byte for byte)."""
    out: dict[str, Any] = {}
    for name in ("tokenize-clm", "train-bpe", "dedup"):
        args = [*fk.command(name, corpus, tok), "--threads", "1"]
        ref = work / f"fsize-{name}-ref"
        fk.run(fk.dataprep_cmd([*args, *fk.out_arg(name, ref)]))
        sizes = sorted({p.stat().st_size for p in ref.rglob("*") if p.is_file()})
        candidates = sorted({max(1, s // 2) for s in sizes} | {s + 1 for s in sizes[:-1]})
        row = {"runs": 0, "one_line_error": 0, "files_compared": 0, "lost": 0}
        for limit in sorted(rng.sample(candidates, min(limits, len(candidates)))):
            d = work / f"fsize-{name}-{limit}"
            if name == "tokenize-clm":
                want = fk.tree_digest(ref)
            else:
                shutil.copytree(ref, d)
                want = fk.tree_digest(d)
            proc = fk.run_with_fsize_limit(fk.dataprep_cmd([*args, *fk.out_arg(name, d)]), limit)
            if proc.returncode == 0:
                shutil.rmtree(d)
                continue  # every file fit
            row["runs"] += 1
            errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
            one_line = proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr
            row["one_line_error"] += int(one_line)
            if name == "tokenize-clm":  # resume: the finished shards are kept and reused
                fk.run(fk.dataprep_cmd([*args, *fk.out_arg(name, d)]))
            got = fk.tree_digest(d)
            row["files_compared"] += len(want)
            row["lost"] += sum(got.get(p) != h for p, h in want.items())
            shutil.rmtree(d)
        out[name] = row
        print(f"  full disk {name}: {row}", flush=True)
    return out


def fuzz(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Random bytes, and valid files truncated and flipped, through every reader and policy."""
    out: dict[str, Any] = {}
    for name, (valid, fmt) in sorted(fk.VALID.items()):
        row = {"inputs": 0, "read": 0, "refused": 0}
        for i in range(args.fuzz):
            if i % 2:
                raw = bytearray(valid[: rng.randrange(len(valid) + 1)])
                for _ in range(rng.randrange(4)):
                    if raw:
                        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            else:
                raw = bytearray(rng.randbytes(rng.randrange(4096)))
            for policy in fk.POLICIES:
                row[fk.read_or_refuse(name, bytes(raw), fmt, policy)] += 1
                row["inputs"] += 1
        out[name] = row
        print(f"  readers {name}: {row}", flush=True)
    return out


def markdown(f: dict[str, Any]) -> str:
    """The tables of RELIABILITY.md from the figures."""
    out = ["| command | trials | kills while running | locks taken over | outputs compared | "
           "leftover temporaries | lost |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, t in f["kill_9"].items():
        out.append(f"| {name} | {t['trials']} | {t['faults']} | {t['locks_taken_over']} | "
                   f"{t['files_compared']:,} | {t['leftovers']} | {t['lost']} |")  # fmt: skip
    out += ["", "| file | flips | detected |", "|---|---:|---:|"]
    out += [f"| {k} | {v['flips']:,} | {v['detected']:,} |" for k, v in f["byte_flips"].items()]
    out += ["", "| command | failing runs | one-line error | outputs compared | lost |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in f["full_disk"].items():
        out.append(f"| {name} | {r['runs']} | {r['one_line_error']} | {r['files_compared']} | "
                   f"{r['lost']} |")  # fmt: skip
    out += ["", "| file | reads | documents | refused, naming the file | panics |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in f["readers"].items():
        out.append(f"| {name} | {r['inputs']:,} | {r['read']:,} | {r['refused']:,} | 0 |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=25, help="kill -9 trials per dataprep command")
    p.add_argument("--trainer-kills", type=int, default=3, help="kill -9 trials of 2 gloo ranks")
    p.add_argument("--flips", type=int, default=300, help="random flips per file kind")
    p.add_argument("--limits", type=int, default=12, help="file-size limits per command")
    p.add_argument("--fuzz", type=int, default=2000, help="random inputs per reader")
    p.add_argument("--seed", type=int, default=None, help="default: FAULT_SEED, else fresh")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--render", type=Path, default=None, help="print the tables of this JSON only")
    args = p.parse_args()
    if args.render:
        print(markdown(json.loads(args.render.read_text())))
        return
    seed = args.seed if args.seed is not None else fk.seed_from_env()
    print(f"FAULT_SEED={seed}", flush=True)
    rng = random.Random(seed)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        work = Path(tmp)
        texts = [d["text"] for d in dataprep.read_documents([str(DEMO)])[0]]
        (work / "corpus").mkdir()
        corpus = fk.make_corpus(work / "corpus", texts)
        tok = work / "tok" / "tokenizer.json"
        dataprep.train_bpe(corpus, 600, out=tok, special_tokens=fk.TRAINER_SPECIALS,
                           holdout_every=0, tiktoken=False)  # fmt: skip
        shards = work / "shards"
        dataprep.tokenize(corpus, tok, shards, seq_len=64, val_fraction=0.05, shard_size="64KB")
        figures = {
            "seed": seed,
            "kill_9": kills(work, corpus, tok, shards, args, rng, seed),
            "byte_flips": flips(work, shards, args, rng),
            "full_disk": full_disk(work, corpus, tok, rng, args.limits),
            "readers": fuzz(args, rng),
        }
    figures["seconds"] = round(time.time() - started)
    figures["python"] = sys.version.split()[0]
    figures["commit"] = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(json.dumps(figures, indent=2))
    print(markdown(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
