"""FineWeb shard download against a local fake hub: names, resume, checksums, offline, missing extra."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.data import fineweb
from engine.data.fineweb import (
    INSTALL_HINT,
    HuggingFaceHub,
    RemoteFile,
    ShardProgress,
    download_fineweb,
    fineweb_names,
)
from engine.data.shards import read_shard_header, write_shard
from engine.errors import DataError


def _hub_folder(folder: Path, num_train: int = 3) -> Path:
    """A folder shaped like the hub repository: small shards with the real names."""
    folder.mkdir()
    for index, name in enumerate(fineweb_names(num_train)):
        write_shard(folder / name, np.arange(1000 + index) % 50257)
    return folder


class FakeHub:
    """Serves files from a folder; records what was downloaded."""

    def __init__(self, folder: Path, sha256: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.downloads: list[str] = []
        self.sha256 = sha256 or {}

    def describe(self, names: list[str]) -> dict[str, RemoteFile]:
        return {name: RemoteFile(name, (self.folder / name).stat().st_size,
                                 self.sha256.get(name, hashlib.sha256((self.folder / name).read_bytes()).hexdigest()))
                for name in names if (self.folder / name).exists()}

    def download(self, name: str, dest: Path) -> Path:
        self.downloads.append(name)
        return Path(shutil.copy(self.folder / name, dest / name))


def test_names_follow_the_speedrun_script() -> None:
    assert fineweb_names(2) == ["fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]


def test_download_then_resume_skips_complete_shards(tmp_path: Path) -> None:
    hub = FakeHub(_hub_folder(tmp_path / "hub"))
    dest = tmp_path / "fineweb10B"
    events: list[ShardProgress] = []
    paths = download_fineweb(2, dest, hub=hub, progress=events.append)
    assert [p.name for p in paths] == fineweb_names(2)
    assert [read_shard_header(p) for p in paths] == [1000, 1001, 1002]
    assert [(e.name, e.state) for e in events if e.state == "done"] == [(n, "done") for n in fineweb_names(2)]
    assert events[0].total == 3 and events[-1].index == 3

    # a shard cut off mid-download is fetched again; complete ones are not
    with paths[1].open("r+b") as handle:
        handle.truncate(1500)
    hub.downloads.clear()
    events.clear()
    download_fineweb(3, dest, hub=hub, progress=events.append)
    assert hub.downloads == ["fineweb_train_000001.bin", "fineweb_train_000003.bin"]
    assert [e.state for e in events if e.name == "fineweb_val_000000.bin"] == ["skipped"]
    assert read_shard_header(dest / "fineweb_train_000001.bin") == 1001


def test_a_checksum_mismatch_deletes_the_file(tmp_path: Path) -> None:
    hub = FakeHub(_hub_folder(tmp_path / "hub"), sha256={"fineweb_val_000000.bin": "0" * 64})
    with pytest.raises(DataError, match="sha256"):
        download_fineweb(1, tmp_path / "dest", hub=hub)
    assert not (tmp_path / "dest" / "fineweb_val_000000.bin").exists()


def test_a_shard_the_hub_does_not_have(tmp_path: Path) -> None:
    hub = FakeHub(_hub_folder(tmp_path / "hub", num_train=1))
    with pytest.raises(DataError, match="fineweb_train_000002.bin is not in"):
        download_fineweb(2, tmp_path / "dest", hub=hub)
    with pytest.raises(DataError, match="between 1 and 103"):
        download_fineweb(0, tmp_path / "dest", hub=hub)


def _fake_huggingface_hub(monkeypatch: pytest.MonkeyPatch, folder: Path, offline: bool = False) -> list[str]:
    """Patch huggingface_hub's two entry points to serve `folder`; returns the downloaded names."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    downloaded: list[str] = []

    def get_paths_info(self, repo_id: str, paths: list[str], *, repo_type: str | None = None, **_: object) -> list:
        assert (repo_id, repo_type) == ("kjj0/fineweb10B-gpt2", "dataset")
        if offline:
            error = getattr(huggingface_hub.errors, "HTTPError", OSError)
            raise error("[Errno -2] Name or service not known")
        return [SimpleNamespace(path=p, size=(folder / p).stat().st_size,
                                lfs=SimpleNamespace(sha256=hashlib.sha256((folder / p).read_bytes()).hexdigest()))
                for p in paths if (folder / p).exists()]

    def hf_hub_download(repo_id: str, filename: str, *, repo_type: str | None = None, local_dir: Path, **_: object) -> str:
        downloaded.append(filename)
        return shutil.copy(folder / filename, Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", get_paths_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return downloaded


def test_the_hugging_face_adapter_downloads_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloaded = _fake_huggingface_hub(monkeypatch, _hub_folder(tmp_path / "hub"))
    paths = download_fineweb(1, tmp_path / "dest")
    assert downloaded == fineweb_names(1) and all(read_shard_header(p) > 0 for p in paths)


def test_offline_is_a_clear_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_huggingface_hub(monkeypatch, _hub_folder(tmp_path / "hub"), offline=True)
    with pytest.raises(DataError, match="cannot reach the Hugging Face Hub") as info:
        download_fineweb(1, tmp_path / "dest")
    assert "internet connection" in info.value.hint


def test_missing_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import now raises ImportError
    with pytest.raises(DataError, match="huggingface_hub") as info:
        HuggingFaceHub()
    assert info.value.hint == INSTALL_HINT
    # complete shards need no hub at all, so an offline machine without the extra can still check them
    dest = tmp_path / "dest"
    download_fineweb(1, dest, hub=FakeHub(_hub_folder(tmp_path / "hub")))
    assert [p.name for p in download_fineweb(1, dest)] == fineweb_names(1)
    assert fineweb.MAX_TRAIN_SHARDS == 103
