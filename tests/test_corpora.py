"""Corpus scanning (LRS2, LRS3, VoxCeleb2, GRID) on tiny fake trees, the manifest, ``prepare --layout``."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsync.data.corpora import (
    LAYOUTS,
    CorpusClip,
    carve_val,
    corpus_summary,
    detect_layout,
    scan_corpus,
    write_manifest,
)
from avsync.errors import AvsyncError
from avsync.evaluation.clips import load_clips

ROOT = Path(__file__).resolve().parents[1]


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def lrs2_tree(root: Path) -> Path:
    touch(root, "main/111/00001.mp4", "main/111/00002.mp4", "main/222/00001.mp4",
          "main/333/00001.mp4", "main/333/00002.mp4", "main/999/00001.mp4",
          "pretrain/111/00003.mp4", "pretrain/444/00001.mp4")
    (root / "train.txt").write_text("111/00001\n111/00002\n")
    (root / "val.txt").write_text("222/00001\n")
    (root / "test.txt").write_text("333/00001 NF\n333/00002 MV\n")
    (root / "pretrain.txt").write_text("111/00003\n444/00001\n")
    return root


def lrs3_tree(root: Path, n_talks: int = 40) -> Path:
    for i in range(n_talks):
        touch(root, f"trainval/talk{i:03d}/00001.mp4", f"trainval/talk{i:03d}/00001.txt",
              f"trainval/talk{i:03d}/00002.mp4", f"pretrain/talk{i:03d}/00005.mp4")
    touch(root, "test/testtalk/00001.mp4", "test/testtalk/00001.txt")
    return root


def vox_tree(root: Path, n_speakers: int = 40) -> Path:
    for i in range(n_speakers):
        touch(root, f"dev/mp4/id{i:05d}/yt{i}a/00001.mp4", f"dev/mp4/id{i:05d}/yt{i}b/00002.mp4",
              f"dev/aac/id{i:05d}/yt{i}a/00001.m4a")
    touch(root, "test/mp4/id90000/ytt/00001.mp4", "test/aac/id90000/ytt/00001.m4a")
    return root


def grid_tree(root: Path) -> Path:
    touch(root, "s1/bbaf2n.mpg", "s1/bbaf3s.mpg", "video/s2/lgwt1a.mpg",
          "s3/video/mpg_6000/pran5p.mpg", "audio_25k/s1/bbaf2n.wav", "s3/audio/pran5p.wav",
          "s1/notes.txt")
    return root


def by_name(clips: list[CorpusClip], root: Path) -> dict[str, CorpusClip]:
    return {c.path.relative_to(root).as_posix(): c for c in clips}


def test_lrs2_official_lists(tmp_path):
    clips = by_name(scan_corpus(lrs2_tree(tmp_path), "lrs2"), tmp_path)
    assert {k: (c.split, c.speaker) for k, c in clips.items()} == {
        "main/111/00001.mp4": ("train", "111"), "main/111/00002.mp4": ("train", "111"),
        "main/222/00001.mp4": ("val", "222"),
        "main/333/00001.mp4": ("test", "333"), "main/333/00002.mp4": ("test", "333"),  # NF/MV cut
        "pretrain/111/00003.mp4": ("pretrain", "111"), "pretrain/444/00001.mp4": ("pretrain", "444"),
    }  # main/999 is in no list: left out
    assert {c.source for c in clips.values()} == {"lrs2"}


def test_lrs2_main_without_lists_is_an_error(tmp_path):
    touch(tmp_path, "main/111/00001.mp4")
    with pytest.raises(AvsyncError, match="train.txt"):
        scan_corpus(tmp_path, "lrs2")


def test_lrs3_groups_splits_and_disjoint_val(tmp_path):
    clips = scan_corpus(lrs3_tree(tmp_path), "lrs3")
    assert len(clips) == 40 * 3 + 1  # .txt transcripts are not clips
    sides = {s: {c.speaker for c in clips if c.split == s} for s in ("train", "val", "test", "pretrain")}
    assert sides["test"] == {"testtalk"}
    assert sides["val"] and sides["train"]
    assert not sides["val"] & sides["train"]
    assert not sides["val"] & sides["pretrain"]  # pretrain clips of a val talk went to val too
    assert sides["train"] == sides["pretrain"]
    assert 1 <= len(sides["val"]) <= 12  # about 10 % of 40 talks
    talk = next(iter(sides["val"]))
    assert {c.path.parent.parent.name for c in clips if c.speaker == talk} == {"trainval", "pretrain"}


def test_voxceleb2_speakers_and_official_test(tmp_path):
    clips = scan_corpus(vox_tree(tmp_path), "voxceleb2")
    assert len(clips) == 40 * 2 + 1  # the aac/*.m4a copies are not read
    assert all(c.path.suffix == ".mp4" for c in clips)
    test = [c for c in clips if c.split == "test"]
    assert [c.speaker for c in test] == ["id90000"]
    train = {c.speaker for c in clips if c.split == "train"}
    val = {c.speaker for c in clips if c.split == "val"}
    assert val and train and not val & train
    assert train | val == {f"id{i:05d}" for i in range(40)}


def test_grid_speakers_anywhere_and_separate_audio(tmp_path):
    clips = by_name(scan_corpus(grid_tree(tmp_path), "grid"), tmp_path)
    assert {k: c.speaker for k, c in clips.items()} == {
        "s1/bbaf2n.mpg": "s1", "s1/bbaf3s.mpg": "s1", "video/s2/lgwt1a.mpg": "s2",
        "s3/video/mpg_6000/pran5p.mpg": "s3"}
    assert clips["s1/bbaf2n.mpg"].audio == tmp_path / "audio_25k/s1/bbaf2n.wav"
    assert clips["s3/video/mpg_6000/pran5p.mpg"].audio == tmp_path / "s3/audio/pran5p.wav"
    assert clips["s1/bbaf3s.mpg"].audio is None
    splits = {c.speaker: c.split for c in clips.values()}
    assert sorted(splits.values()).count("val") == 1  # fallback: one of three speakers carved
    assert len({(c.speaker, c.split) for c in clips.values()}) == 3  # a speaker on one side only


def test_carve_val_is_stable_when_files_are_added(tmp_path):
    before = {c.speaker: c.split for c in scan_corpus(vox_tree(tmp_path / "a", 40), "voxceleb2")}
    after_clips = scan_corpus(vox_tree(tmp_path / "b", 60), "voxceleb2")
    after = {c.speaker: c.split for c in after_clips}
    assert {k: after[k] for k in before} == before
    assert scan_corpus(tmp_path / "b", "voxceleb2") == after_clips  # deterministic


def test_carve_val_edge_cases():
    one = [CorpusClip(Path(f"/x/{i}.mp4"), "only", "grid", "train") for i in range(3)]
    assert carve_val(one, 0.9) == one  # a single group stays train
    two = [CorpusClip(Path(f"/x/{s}.mp4"), s, "grid", "train") for s in ("s1", "s2")]
    assert sorted(c.split for c in carve_val(two, 0.99)) == ["train", "val"]
    assert carve_val(two, 0.0) == two
    with pytest.raises(AvsyncError):
        carve_val(two, 1.0)


def test_limit_spreads_over_splits(tmp_path):
    full = scan_corpus(lrs3_tree(tmp_path), "lrs3")
    few = scan_corpus(tmp_path, "lrs3", limit=8)
    assert len(few) == 8 and set(few) <= set(full)
    assert {c.split for c in few} == {"train", "val", "test", "pretrain"}
    assert few == sorted(few, key=lambda c: c.path.as_posix())


@pytest.mark.parametrize(("make", "layout"), [(lrs2_tree, "lrs2"), (lrs3_tree, "lrs3"),
                                              (vox_tree, "voxceleb2"), (grid_tree, "grid")])
def test_auto_detection(tmp_path, make, layout):
    make(tmp_path)
    assert detect_layout(tmp_path) == layout
    assert scan_corpus(tmp_path) == scan_corpus(tmp_path, layout)


def test_unknown_empty_and_missing_roots(tmp_path):
    touch(tmp_path, "clips/a.mp4")
    with pytest.raises(AvsyncError, match="unknown corpus layout"):
        scan_corpus(tmp_path)
    with pytest.raises(AvsyncError, match="unknown corpus layout 'timit'"):
        scan_corpus(tmp_path, "timit")
    (tmp_path / "empty/s1").mkdir(parents=True)
    with pytest.raises(AvsyncError, match="no grid clips"):
        scan_corpus(tmp_path / "empty")
    with pytest.raises(AvsyncError, match="not a folder"):
        scan_corpus(tmp_path / "missing", "lrs3")
    assert "auto" in LAYOUTS


def load_train_module():
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_cache(folder: Path, clips: list[CorpusClip]) -> list[Path]:
    """npz files with only the ``path`` a real cache file stores (resolved, absolute)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, c in enumerate(clips):
        files.append(folder / f"{i:03d}.npz")
        np.savez(files[-1], path=np.array(c.path.resolve().as_posix()))
    return files


@pytest.mark.parametrize("inside", [True, False])
def test_manifest_round_trip_and_train_split_matching(tmp_path, inside):
    root = lrs2_tree(tmp_path / "lrs2")
    clips = scan_corpus(root)
    out = root / "manifest.jsonl" if inside else tmp_path / "cache" / "manifest.jsonl"
    write_manifest(clips, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["split"] for r in rows] == [c.split for c in clips]
    assert all(Path(r["path"]).is_absolute() != inside for r in rows)
    first = root / "main/111/00001.mp4"
    assert rows[0]["path"] == ("main/111/00001.mp4" if inside else first.resolve().as_posix())
    loaded = load_clips(out)
    assert [(c.path.resolve(), c.speaker, c.source) for c in loaded] == \
        [(c.path.resolve(), c.speaker, c.source) for c in clips]
    mod = load_train_module()
    files, speakers, unmatched = mod.match_split(fake_cache(tmp_path / "npz", clips), rows)
    assert len(files["train"]) == 2 and len(files["val"]) == 1
    assert speakers == {"train": {"111"}, "val": {"222"}}
    assert len(unmatched) == 4  # test and pretrain rows are not used by train.py


def test_manifest_records_separate_audio_and_summary(tmp_path):
    clips = scan_corpus(grid_tree(tmp_path / "grid"), "grid")
    out = write_manifest(clips, tmp_path / "grid" / "m.jsonl")
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["s1/bbaf2n.mpg"]["audio"] == "audio_25k/s1/bbaf2n.wav"
    assert "audio" not in rows["s1/bbaf3s.mpg"]
    assert list(tmp_path.glob("grid/.*avsync-tmp*")) == []
    summary = corpus_summary(clips)
    assert summary.startswith("grid: train 3 clips/2 speakers; val 1 clips/1 speakers")
    assert "\n" not in summary


def run_cli(*args: str | Path):
    from avsync.cli import app

    return CliRunner().invoke(app, ["prepare", *map(str, args)])


def test_prepare_layout_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args in (["--layout", "bogus", "--clips", tmp_path / "empty"],
                 ["--layout", "auto", "--clips", tmp_path / "empty"],
                 ["--manifest", tmp_path / "m.jsonl", "--clips", tmp_path / "empty"]):
        res = run_cli(*args, "--out", tmp_path / "out")
        assert res.exit_code != 0
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
        assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_prepare_grid_end_to_end(tmp_path, example_clip):
    tree = tmp_path / "GRID"
    (tree / "s1").mkdir(parents=True)
    shutil.copy(example_clip, tree / "s1" / "bbaf2n.mp4")
    out = tmp_path / "cache"
    res = run_cli("--layout", "grid", "--clips", tree, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "grid: train 1 clips/1 speakers" in res.stdout
    npz = sorted(out.glob("*.npz"))
    assert len(npz) == 1
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows == [{"path": (tree / "s1" / "bbaf2n.mp4").resolve().as_posix(), "speaker": "s1",
                     "source": "grid", "split": "train"}]
    with np.load(npz[0], allow_pickle=False) as z:
        assert str(z["speaker"]) == "s1" and str(z["source"]) == "grid"
    files, _, unmatched = load_train_module().match_split(npz, rows)
    assert files["train"] == npz and not unmatched


def test_train_script_config_overrides():
    """benchmarks/train.py --set FIELD=VALUE: JSON values, lists as tuples, unknown fields refused."""
    mod = load_train_module()
    cfg = mod.config_with("c3", "debug", ["similarity_dim=0", "flow_channels=[2, 4]"])
    assert cfg.similarity_dim == 0 and cfg.flow_channels == (2, 4)
    assert mod.config_with("vocalist", "small", ["similarity=false"]).similarity is False
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        mod.config_with("c3", "debug", ["no_such_field=1"])
    with pytest.raises(ValueError):
        mod.config_with("c3", "debug", ["similarity_dim=-1"])  # the config's own check
