"""The GPT-2-tokenised FineWeb-10B shards the speedrun trains on, from the Hugging Face Hub.

Same files and names as modded-nanogpt's `data/cached_fineweb10B.py`: `fineweb_val_000000.bin`
and `fineweb_train_000001.bin` … (100M tokens each, 103 in all). Resumable: a shard whose header
and size check out is skipped, a partial one is fetched again (huggingface_hub resumes it).
`huggingface_hub` is the optional extra `[fineweb]`, imported only when something must be fetched.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.data.shards import read_shard_header
from engine.errors import DataError
from engine.paths import make_dir

REPO_ID = "kjj0/fineweb10B-gpt2"
MAX_TRAIN_SHARDS = 103  # the full 10B tokens
VAL_NAME = "fineweb_val_000000.bin"
INSTALL_HINT = "pip install 'nanogpt-tui[fineweb]'"


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """What the hub says about one file; either may be unknown."""

    name: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """One shard's state: "skipped" (already complete), "downloading" or "done"."""

    name: str
    index: int  # 1-based
    total: int
    state: str
    path: Path


class Hub(Protocol):
    """Where shards come from; tests pass a local fake."""

    def describe(self, names: list[str]) -> dict[str, RemoteFile]:
        """Size and checksum of each name; DataError when the hub cannot be reached."""
        ...

    def download(self, name: str, dest: Path) -> Path:
        """Fetch `name` into the folder `dest` and return its path there."""
        ...


def fineweb_names(num_train: int) -> list[str]:
    """The validation shard, then training shards 1..num_train (shard 0 of the train split does not exist)."""
    return [VAL_NAME] + [f"fineweb_train_{index:06d}.bin" for index in range(1, num_train + 1)]


def _hub_errors(hub_module: Any) -> tuple[type[BaseException], ...]:
    # requests' and huggingface_hub's errors are OSErrors; httpx's (huggingface_hub >= 1.0) are not
    http_error = getattr(getattr(hub_module, "errors", None), "HTTPError", None)
    return (OSError, http_error) if isinstance(http_error, type) else (OSError,)


class HuggingFaceHub:
    """The dataset repository on huggingface.co, through huggingface_hub."""

    def __init__(self, repo_id: str = REPO_ID) -> None:
        try:
            import huggingface_hub
        except ImportError as err:
            raise DataError("downloading FineWeb needs the huggingface_hub package", hint=INSTALL_HINT) from err
        self.repo_id = repo_id
        self._hub = huggingface_hub
        self._errors = _hub_errors(huggingface_hub)

    def describe(self, names: list[str]) -> dict[str, RemoteFile]:
        try:
            infos = self._hub.HfApi().get_paths_info(self.repo_id, names, repo_type="dataset")
        except self._errors as err:
            raise DataError(f"cannot reach the Hugging Face Hub for {self.repo_id}: {err}",
                            hint="check the internet connection (and HF_ENDPOINT or proxy settings); "
                                 "complete shards are kept and skipped next time") from err
        found: dict[str, RemoteFile] = {}
        for info in infos:
            lfs = getattr(info, "lfs", None)
            sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
            found[info.path] = RemoteFile(info.path, getattr(info, "size", None), sha256)
        return found

    def download(self, name: str, dest: Path) -> Path:
        try:
            return Path(self._hub.hf_hub_download(self.repo_id, name, repo_type="dataset", local_dir=dest))
        except self._errors as err:
            raise DataError(f"downloading {name} from {self.repo_id} failed: {err}",
                            hint="run the same command again to resume; complete shards are skipped") from err


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_complete(path: Path) -> bool:
    """A valid shard: the header's token count matches the file size (a cut-off download never does)."""
    if not path.is_file():
        return False
    try:
        read_shard_header(path)
    except DataError:
        return False
    return True


def _verify(path: Path, remote: RemoteFile | None) -> None:
    """Size and sha256 against the hub (where it gives them), then the shard header; delete on mismatch."""
    problem = None
    if remote is not None and remote.size is not None and path.stat().st_size != remote.size:
        problem = f"is {path.stat().st_size} bytes, the hub says {remote.size}"
    elif remote is not None and remote.sha256 is not None and _sha256(path) != remote.sha256:
        problem = "does not match the hub's sha256 checksum"
    if problem is None:
        try:
            read_shard_header(path)
            return
        except DataError as err:
            problem = f"is not a valid shard ({err.message})"
    path.unlink(missing_ok=True)
    raise DataError(f"the downloaded {path.name} {problem}; it was deleted", hint="run the command again")


def download_fineweb(num_train: int, dest: Path, *, hub: Hub | None = None,
                     progress: Callable[[ShardProgress], None] | None = None) -> list[Path]:
    """Make sure dest holds the validation shard and train shards 1..num_train; returns their paths."""
    if not 1 <= num_train <= MAX_TRAIN_SHARDS:
        raise DataError(f"--shards must be between 1 and {MAX_TRAIN_SHARDS}, got {num_train}",
                        hint="each training shard is 100M tokens (about 200 MB); 8 are enough for the 124M speedrun")
    dest = Path(dest).expanduser()
    names = fineweb_names(num_train)
    paths = [dest / name for name in names]
    report = progress or (lambda event: None)
    missing = [name for name, path in zip(names, paths) if not _is_complete(path)]
    remote: dict[str, RemoteFile] = {}
    if missing:
        hub = hub if hub is not None else HuggingFaceHub()
        remote = hub.describe(missing)
        absent = [name for name in missing if name not in remote]
        if absent:
            raise DataError(f"{absent[0]} is not in the FineWeb repository {REPO_ID}",
                            hint=f"the repository has training shards 1..{MAX_TRAIN_SHARDS}")
        make_dir(dest, "download folder")
        needed = sum(remote[name].size or 0 for name in missing)
        free = shutil.disk_usage(dest).free
        if needed > free:
            raise DataError(f"the missing shards need {needed / 1e9:.1f} GB but {dest} has {free / 1e9:.1f} GB free",
                            hint="free some space or pass --dest on a larger disk")
    for index, (name, path) in enumerate(zip(names, paths), start=1):
        if name not in missing:
            report(ShardProgress(name, index, len(names), "skipped", path))
            continue
        report(ShardProgress(name, index, len(names), "downloading", path))
        # a damaged file would be taken as up to date by the hub client, so it goes first
        path.unlink(missing_ok=True)
        assert hub is not None
        downloaded = hub.download(name, dest)
        _verify(downloaded, remote.get(name))
        report(ShardProgress(name, index, len(names), "done", downloaded))
    return paths
