"""Dataset files: ``{split}.npz`` per split plus ``meta.json``, written atomically, loaded checked.

Format (ARCHITECTURE.md): ``X`` float64 [E, N, T, d], ``t`` float64 [E, T], ``env_id`` int [E];
``meta.json`` holds ``environments`` (id, family, family_index, params, role,
in_training_range), the generator config, the seed and ``content_hash``: a SHA-256 over every
split's arrays and the environment list, so that any edit of either is detected on load.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.data.generate import SPLITS
from mixer.errors import DatasetError
from mixer.records.atomic import atomic_write, atomic_write_text

FORMAT_VERSION = 1
ARRAYS = ("X", "t", "env_id")


@dataclass
class Split:
    X: np.ndarray  # [E, N, T, d] float64
    t: np.ndarray  # [E, T] float64
    env_id: np.ndarray  # [E] int64


@dataclass
class Dataset:
    path: Path
    meta: dict
    splits: dict[str, Split]

    @property
    def environments(self) -> dict[int, dict]:
        return {e["id"]: e for e in self.meta["environments"]}

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


def _update(digest, split: str, arrays: dict) -> None:
    for key in ARRAYS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{split}/{key}/{array.dtype.str}/{array.shape}".encode())
        digest.update(array.tobytes())


def content_hash(splits: dict[str, dict], environments: list[dict]) -> str:
    """The dataset's identity: every split's arrays and the environment list."""
    digest = hashlib.sha256()
    for split in SPLITS:
        _update(digest, split, splits[split])
    digest.update(json.dumps(environments, sort_keys=True).encode())
    return digest.hexdigest()


def part_hashes(splits: dict, environments: list[dict], which=tuple(SPLITS)) -> dict[str, str]:
    """One hash per split (of ``which``) and one of the environment list, so that a stage can
    load (and check) only the splits it may read: training never opens test or adapt_query."""
    hashes = {}
    for split in which:
        digest = hashlib.sha256()
        _update(digest, split, splits[split])
        hashes[split] = digest.hexdigest()
    hashes["environments"] = hashlib.sha256(
        json.dumps(environments, sort_keys=True).encode()
    ).hexdigest()
    return hashes


def save_dataset(out_dir: Path, splits: dict, environments: list[dict], meta: dict) -> dict:
    """Write every split, then meta.json last (its presence marks a complete dataset)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        arrays = {k: splits[split][k] for k in ARRAYS}
        atomic_write(out_dir / f"{split}.npz", lambda tmp, a=arrays: np.savez(tmp, **a))
    full_meta = {
        "format_version": FORMAT_VERSION,
        **meta,
        "splits": {s: list(splits[s]["X"].shape) for s in SPLITS},
        "environments": environments,
        "content_hash": content_hash(splits, environments),
        "part_hashes": part_hashes(splits, environments),
    }
    text = json.dumps(full_meta, indent=1, sort_keys=False) + "\n"
    atomic_write_text(out_dir / "meta.json", text)
    return full_meta


def load_dataset(
    path: str | Path, verify_hash: bool = True, splits: tuple[str, ...] | None = None
) -> Dataset:
    """Load and validate a dataset folder; every failure names the file and the fix.

    ``splits`` (default: all) are the only split files opened, each checked against its own
    hash: training loads ("train", "val") and so works without test or adaptation files.
    """
    path = Path(path)
    regenerate = f"Fix: regenerate it (snakemake --cores 1 --force {path / 'meta.json'})."
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise DatasetError(f"{meta_file}: missing. {regenerate}")
    try:
        meta = json.loads(meta_file.read_text())
        environments = meta["environments"]
        expected_hash = meta["content_hash"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{meta_file}: unreadable or incomplete ({err}). {regenerate}") from None
    wanted = tuple(SPLITS) if splits is None else tuple(splits)
    parts = meta.get("part_hashes")
    if set(wanted) != set(SPLITS) and not isinstance(parts, dict):
        raise DatasetError(f"{meta_file}: no per-split hashes (an older format). {regenerate}")
    envs = {e["id"]: e for e in environments}
    raw, loaded = {}, {}
    for split in wanted:
        file = path / f"{split}.npz"
        raw[split] = _read_npz(file, regenerate)
        loaded[split] = _check_split(file, raw[split], envs, SPLITS[split], regenerate)
    if (
        "adapt_support" in loaded
        and "adapt_query" in loaded
        and not np.array_equal(loaded["adapt_support"].env_id, loaded["adapt_query"].env_id)
    ):
        raise DatasetError(
            f"{path}: adapt_support and adapt_query hold different environments. {regenerate}"
        )
    if verify_hash:
        if set(wanted) == set(SPLITS):
            intact = content_hash(raw, environments) == expected_hash
        else:
            found = part_hashes({**dict.fromkeys(SPLITS, None), **raw}, environments, wanted)
            intact = all(found[k] == parts.get(k) for k in found)
        if not intact:
            raise DatasetError(
                f"{meta_file}: content hash does not match the arrays and environments on "
                f"disk (a file was edited or mixed from two generations). {regenerate}"
            )
    return Dataset(path=path, meta=meta, splits=loaded)


def _read_npz(file: Path, fix: str) -> dict:
    if not file.is_file():
        raise DatasetError(f"{file}: missing. {fix}")
    try:
        with np.load(file, allow_pickle=False) as data:
            missing = [k for k in ARRAYS if k not in data.files]
            if missing:
                raise DatasetError(f"{file}: missing arrays {missing}. {fix}")
            return {k: data[k] for k in ARRAYS}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{file}: corrupt or truncated ({err}). {fix}") from None


def _check_split(file: Path, arrays: dict, envs: dict, role: str, fix: str) -> Split:
    X, t, env_id = arrays["X"], arrays["t"], arrays["env_id"]
    problems = []
    if X.dtype != np.float64 or X.ndim != 4:
        problems.append(f"X must be float64 [E, N, T, d], got {X.dtype} {list(X.shape)}")
    elif t.dtype != np.float64 or t.shape != (X.shape[0], X.shape[2]):
        want = [X.shape[0], X.shape[2]]
        problems.append(f"t must be float64 [E, T] = {want}, got {t.dtype} {list(t.shape)}")
    elif not np.issubdtype(env_id.dtype, np.integer) or env_id.shape != (X.shape[0],):
        got = f"{env_id.dtype} {list(env_id.shape)}"
        problems.append(f"env_id must be int [E] = [{X.shape[0]}], got {got}")
    elif not (np.isfinite(X).all() and np.isfinite(t).all()):
        problems.append(f"{int((~np.isfinite(X)).sum())} non-finite values in X or t")
    else:
        unknown = [int(i) for i in env_id if int(i) not in envs]
        wrong_role = [int(i) for i in env_id if int(i) in envs and envs[int(i)]["role"] != role]
        if unknown:
            problems.append(f"env_id {unknown[:5]} not in meta.json")
        if wrong_role:
            problems.append(f"env_id {wrong_role[:5]} are not '{role}' environments")
        if len(set(env_id.tolist())) != len(env_id):
            problems.append("duplicate env_id")
    if problems:
        raise DatasetError(f"{file}: " + "; ".join(problems) + f". {fix}")
    return Split(X=X, t=t, env_id=env_id.astype(np.int64))
