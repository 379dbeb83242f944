"""Manifest: read/write round trip, validation with quarantine reasons, speaker/group/sentence-disjoint splits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voicelib.data import manifest, splits
from voicelib.errors import DataError, LeakageError


def _row(path, label, speaker, group=None, text="", duration=3.0, **extra):
    """One hand-made manifest row."""
    return {"path": f"/data/{path}.flac", "language": "hindi", "label": label, "source": extra.get("source", "x"),
            "engine": "human" if label == "human" else "espeak-ng", "speaker": speaker,
            "group": group if group is not None else speaker, "text": text, "duration": duration,
            "sample_rate": 16000, "hash": path}


def _corpus() -> pd.DataFrame:
    """12 human speakers (4 sentences each) and 6 espeak voices, each speaking the sentences of two humans."""
    rows = []
    for h in range(12):
        for k in range(4):
            rows.append(_row(f"h{h}_{k}", "human", f"spk{h}", text=f"Sentence {h}-{k}.", duration=2.0 + h % 3))
    for v in range(6):
        for h in (2 * v, 2 * v + 1):
            for k in range(4):
                rows.append(_row(f"ai{v}_{h}_{k}", "ai", f"espeak_hi_v{v}", text=f"sentence {h}-{k}"))
    rows += [_row(f"fs_{k}", "ai", "fs2hs_hi", group=f"fs:{k}", text=f"own text {k}") for k in range(10)]
    return pd.DataFrame(rows)


def test_splits_are_disjoint_by_speaker_group_and_sentence():
    split = splits.assign_splits(_corpus(), seed=0)
    splits.check_leakage(split)
    active = split[split["split"] != "excluded"]
    for column in ("speaker", "group"):
        assert (active.groupby(column)["split"].nunique() == 1).all()
    texts = active.assign(norm=active["text"].map(manifest.normalize_text))
    assert (texts.groupby("norm")["split"].nunique() == 1).all()
    assert set(split["split"]) <= {"train", "val", "test", "excluded"}


def test_every_split_gets_both_classes():
    split = splits.assign_splits(_corpus(), seed=3)
    for name in ("train", "val", "test"):
        labels = set(split.loc[split["split"] == name, "label"])
        assert labels == {"human", "ai"}, (name, labels)


def test_splits_are_deterministic_and_independent_of_row_order():
    df = _corpus()
    a = splits.assign_splits(df, seed=7)
    b = splits.assign_splits(df.sample(frac=1.0, random_state=1), seed=7)
    assert a.set_index("path")["split"].to_dict() == b.set_index("path")["split"].to_dict()
    assert list(a["path"]) == list(df["path"])  # input order kept
    seeds = {tuple(splits.assign_splits(df, seed=s)["split"]) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_fractions_are_roughly_met_for_each_label():
    split = splits.assign_splits(_corpus(), seed=0, val_fraction=0.25, test_fraction=0.25)
    human = split[split["label"] == "human"]
    share = human.groupby("split")["duration"].sum() / human["duration"].sum()
    assert 0.3 < share["train"] < 0.7 and share["val"] > 0.1 and share["test"] > 0.1


def test_a_sentence_in_two_splits_is_excluded_with_a_reason():
    rows = [_row(f"h{h}", "human", f"spk{h}", text=f"line {h}") for h in range(10)]
    rows += [_row(f"g{h}", "ai", "gtts_hi_com", text=f"line {h}") for h in range(10)]  # one voice, all texts
    split = splits.assign_splits(pd.DataFrame(rows), seed=0)
    splits.check_leakage(split)
    excluded = split[split["split"] == "excluded"]
    assert len(excluded) > 0 and excluded["split_reason"].str.contains("sentence also in").all()
    assert (split["label"] == "human").sum() == (split[split["label"] == "human"]["split"] != "excluded").sum()


def test_a_connected_speaker_and_group_move_together():
    rows = [_row("a1", "human", "alice", group="session1"), _row("a2", "human", "bob", group="session1"),
            _row("a3", "human", "bob", group="session2")] + [_row(f"o{i}", "human", f"o{i}") for i in range(8)]
    split = splits.assign_splits(pd.DataFrame(rows), seed=0)
    assert split.loc[split["path"].str.contains("/a"), "split"].nunique() == 1


def test_check_leakage_names_the_offender():
    df = pd.DataFrame([_row("a", "human", "alice"), _row("b", "human", "alice", group="other")])
    df["split"] = ["train", "test"]
    with pytest.raises(LeakageError, match=r"speaker 'alice' in test and train"):
        splits.check_leakage(df)
    df = pd.DataFrame([_row("a", "human", "s1", text="Same words."), _row("b", "ai", "v1", text="same words")])
    df["split"] = ["val", "test"]
    with pytest.raises(LeakageError, match="sentence 'same words'"):
        splits.check_leakage(df)
    df["split"] = ["val", "excluded"]
    splits.check_leakage(df)
    with pytest.raises(DataError, match="assign_splits"):
        splits.check_leakage(df.drop(columns="split"))


def test_bad_fractions_and_empty_manifest_are_refused():
    with pytest.raises(ValueError, match="sum below 1"):
        splits.assign_splits(_corpus(), seed=0, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="empty"):
        splits.assign_splits(pd.DataFrame(columns=manifest.COLUMNS), seed=0)


def test_write_then_read_round_trip_with_relative_paths(tmp_path):
    (tmp_path / "audio").mkdir()
    df = pd.DataFrame([_row("x", "human", "s")]).assign(path=str(tmp_path / "audio" / "x.flac"), text="नमस्ते, दुनिया")
    out = manifest.write_manifest(df, tmp_path / "manifest.csv")
    assert "audio/x.flac" in out.read_text(encoding="utf-8").splitlines()[1]
    back = manifest.read_manifest(out)
    assert back.loc[0, "path"] == str(tmp_path / "audio" / "x.flac") and back.loc[0, "text"] == "नमस्ते, दुनिया"
    manifest.write_manifest(df, out)
    assert not list(tmp_path.glob("manifest.csv.*.bak"))  # unchanged: no rewrite
    manifest.write_manifest(df.assign(speaker="t"), out)
    assert len(list(tmp_path.glob("manifest.csv.*.bak"))) == 1


def test_read_manifest_refuses_missing_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,kind\na.wav,human\n", encoding="utf-8")
    with pytest.raises(DataError, match="path, label|label, path|missing column"):
        manifest.read_manifest(tmp_path / "m.csv")


def test_validate_quarantines_with_reasons(tmp_path, make_tone):
    def write(name, wave):
        sf.write(tmp_path / name, wave, 16000)
        return str(tmp_path / name)

    good = write("good.wav", make_tone(300, duration=1.0))
    rows = [
        {"path": good, "label": "human"},
        {"path": write("copy.wav", make_tone(300, duration=1.0)), "label": "ai"},
        {"path": write("silent.wav", np.zeros(16000, np.float32)), "label": "human"},
        {"path": write("short.wav", make_tone(300, duration=0.1)), "label": "human"},
        {"path": str(tmp_path / "missing.wav"), "label": "human"},
        {"path": write("other.wav", make_tone(500, duration=1.0)), "label": "robot"},
    ]
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    rows.append({"path": str(tmp_path / "corrupt.wav"), "label": "ai"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    kept, quarantined = manifest.validate(pd.DataFrame(rows), min_duration=0.5)
    assert list(kept["path"]) == [good] and kept.loc[0, "duration"] == 1.0 and kept.loc[0, "hash"]
    reasons = dict(zip([p.rsplit("/", 1)[1] for p in quarantined["path"]], quarantined["reason"]))
    assert reasons["copy.wav"].startswith("duplicate of") and good in reasons["copy.wav"]
    assert "silent" in reasons["silent.wav"]
    assert reasons["short.wav"].startswith("too short")
    assert reasons["missing.wav"] == "missing file"
    assert "neither" in reasons["other.wav"]
    assert reasons["corrupt.wav"].startswith("corrupt")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched


def test_summary_counts_minutes():
    df = _corpus()
    table = manifest.summary(df)
    assert table["clips"].sum() == len(df)
    assert table.loc[table["label"] == "human", "minutes"].sum() == pytest.approx(
        df[df.label == "human"].duration.sum() / 60, abs=0.05)


def _families_frame() -> pd.DataFrame:
    rows = []
    for split in ("train", "val", "test"):
        for family, engine in (("formant", "espeak-ng"), ("neural", "kokoro"), ("vocoder", "world-dio"),
                               ("diphone", "festival")):
            for i in range(3):
                rows.append({"path": f"/x/{split}_{engine}_{i}.flac", "label": "ai", "engine": engine,
                             "family": family, "speaker": f"{engine}_{split}", "split": split, "split_reason": ""})
        rows.append({"path": f"/x/{split}_h.flac", "label": "human", "engine": "human", "family": "human",
                     "speaker": f"h_{split}", "split": split, "split_reason": ""})
    return pd.DataFrame(rows)


def test_hold_out_families_keeps_one_family_only_in_test_and_one_only_in_val():
    df = _families_frame()
    out = splits.hold_out_families(df, seed=0, min_ai_clips=1)
    fams = manifest.family_of(out)
    ai = out["label"] == "ai"
    by_split = {s: set(fams[ai & (out["split"] == s)]) for s in ("train", "val", "test")}
    only_test = by_split["test"] - by_split["train"] - by_split["val"]
    only_val = by_split["val"] - by_split["train"]
    assert len(only_test) == 1 and len(only_val) == 1 and len(by_split["train"]) == 2
    assert (out["label"] == "human").sum() == 3 and (out.loc[out["label"] == "human", "split"] != "excluded").all()
    assert out.loc[out["split"] == "excluded", "split_reason"].str.contains("held out for").all()
    again = splits.hold_out_families(df, seed=0, min_ai_clips=1)
    pd.testing.assert_frame_equal(out, again)  # deterministic under the seed


def test_hold_out_families_given_names_and_too_few_families():
    df = _families_frame()
    out = splits.hold_out_families(df, seed=3, test_families=["neural"], val_families=["diphone"], min_ai_clips=1)
    fams = manifest.family_of(out)
    assert set(out.loc[fams == "neural", "split"]) == {"test", "excluded"}
    assert set(out.loc[fams == "diphone", "split"]) == {"val", "excluded"}
    with pytest.raises(ValueError, match="have no AI clips; choose from"):
        splits.hold_out_families(df, seed=0, test_families=["cloned"])
    one = df[df["family"].isin(["formant", "human"])]
    pd.testing.assert_frame_equal(splits.hold_out_families(one, seed=0), one)  # nothing to hold out: unchanged


def test_hold_out_never_leaves_a_split_without_ai_clips():
    df = _families_frame()
    df = df[~((df["family"] == "neural") & (df["split"] != "test"))]  # neural only in test: holding out formant
    df = df[df["family"].isin(["formant", "neural", "human"])]  # ... would leave train and val with no AI
    for seed in range(6):  # whichever family the seed draws
        out = splits.hold_out_families(df, seed=seed, min_ai_clips=1)
        for split in ("train", "val", "test"):
            assert ((out["split"] == split) & (out["label"] == "ai")).any(), (seed, split)
    with pytest.raises(ValueError, match="would leave the train and val split"):
        splits.hold_out_families(df, seed=0, test_families=["formant"])


def test_hold_out_prefers_tts_families_over_vocoded_copies():
    df = _families_frame()
    for seed in range(8):
        out = splits.hold_out_families(df, seed=seed, min_ai_clips=1)
        fams = manifest.family_of(out)
        assert (out.loc[fams == "vocoder", "split"] != "excluded").all(), seed  # vocoded copies all kept


def test_hold_out_prefers_a_family_with_enough_clips_in_the_split():
    df = _families_frame()
    extra = df[(df["family"] == "diphone") & (df["split"].isin(["val", "test"]))]
    df = pd.concat([df] + [extra.assign(path=extra["path"] + f".{k}") for k in range(4)], ignore_index=True)
    for seed in range(8):  # diphone alone has 15 val and 15 test clips; the others have 3
        out = splits.hold_out_families(df, seed=seed, min_ai_clips=10)
        fams = manifest.family_of(out)
        held = {s: set(fams[(out["label"] == "ai") & (out["split"] == s)]) - set(fams[(out["label"] == "ai")
                                                                                       & (out["split"] == "train")])
                for s in ("val", "test")}
        assert "diphone" in held["test"] | held["val"], seed  # held out where it has the clips
