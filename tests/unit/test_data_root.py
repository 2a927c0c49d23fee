"""A path a request names: under a data root, through no symbolic link below it, real
folders on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import InvalidArgument
from shared.paths import confined, parse_roots
from shared.settings import TrainerSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "store").mkdir(parents=True)
    (root / "store" / "product.csv").write_text("product_id\n", encoding="utf-8")
    return root


def _refused(raw: str, roots: list[Path], message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        confined(raw, roots, "dataset")
    assert refused.value.message.startswith(f"dataset: {message}"), refused.value.message


def test_a_folder_under_the_root_is_its_real_path(root: Path) -> None:
    assert confined(str(root / "store"), [root], "dataset") == root / "store"
    assert confined(str(root / "store") + "/", [root], "dataset") == root / "store"
    # A missing folder is the caller's "not a folder" to report, not a refusal here.
    assert confined(str(root / "later"), [root], "dataset") == root / "later"


def test_outside_every_root_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    _refused(str(tmp_path / "elsewhere"), [root], f"{tmp_path / 'elsewhere'} is outside")
    _refused("/etc", [root], "/etc is outside the data root")
    # A sibling whose name starts like the root is not under it.
    (tmp_path / "data2").mkdir()
    _refused(str(tmp_path / "data2"), [root], f"{tmp_path / 'data2'} is outside")
    assert confined(str(tmp_path / "data2"), [root, tmp_path / "data2"], "dataset")


def test_relative_paths_and_dotdot_are_refused(root: Path) -> None:
    _refused("store", [root], "store is not an absolute path")
    _refused(f"{root}/store/../../etc", [root], f"{root}/store/../../etc has a '..' component")
    _refused(f"{root}/x\x00", [root], "contains a NUL character")


def test_a_symbolic_link_below_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "product.csv").write_text("x\n", encoding="utf-8")
    (root / "link").symlink_to(outside)
    _refused(str(root / "link"), [root], f"{root / 'link'} passes through a symbolic link")
    # Even a link that stays inside the root: a link's target may change after the check.
    (root / "inner").symlink_to(root / "store")
    _refused(str(root / "inner"), [root], f"{root / 'inner'} passes through a symbolic link")
    # A link in the middle of the path.
    (root / "deep").mkdir()
    (root / "deep" / "via").symlink_to(outside)
    _refused(str(root / "deep" / "via" / "x"), [root], "")


def test_a_linked_file_inside_the_folder_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "shadow").write_text("secret\n", encoding="utf-8")
    (root / "store" / "query.csv").symlink_to(tmp_path / "shadow")
    _refused(str(root / "store"), [root], f"{root / 'store'} holds a symbolic link, query.csv")


def test_a_root_behind_a_link_is_named_either_way(root: Path, tmp_path: Path) -> None:
    mounted = tmp_path / "mnt"
    mounted.symlink_to(root)
    assert confined(str(mounted / "store"), [mounted], "dataset") == root / "store"
    assert confined(str(root / "store"), [mounted], "dataset") == root / "store"


def test_the_trainer_defaults_to_the_shared_data_and_the_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared data folder is read like the intent service's taxonomy: from the process.
    monkeypatch.setenv("SHOPSENSE_SHARED_DATA", "/srv/shared")
    settings = TrainerSettings.load({"SHOPSENSE_STATE_DIR": str(tmp_path)})
    assert settings.data_root == (Path("/srv/shared"), tmp_path)
    given = TrainerSettings.load({"SHOPSENSE_DATA_ROOT": f"/a{os.pathsep}/b"})
    assert given.data_root == (Path("/a"), Path("/b"))
    assert parse_roots("/a") == (Path("/a"),)
    with pytest.raises(ValueError, match="SHOPSENSE_DATA_ROOT: expected one folder or more"):
        TrainerSettings.load({"SHOPSENSE_DATA_ROOT": os.pathsep})
