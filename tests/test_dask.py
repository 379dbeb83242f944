"""Collection on a Dask cluster (2 local worker processes): the serial run's manifest, a killed worker recovered."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from voicelib.data import cluster
from voicelib.data import espeak as engine
from voicelib.data.collect import CollectConfig, collect_all
from voicelib.data.sources import synth
from voicelib.data.sources.engines import ENGINES
from voicelib.errors import DataError

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # a Dask LocalCluster of two worker processes
TEXTS = ["आज मौसम अच्छा है।", "कल बारिश होगी।", "चाय ठंडी हो गई।"]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of 2 single-threaded worker processes that can import tests/dask_jobs.py."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "OMP_NUM_THREADS")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), saved["PYTHONPATH"] or ""])
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=40) as local:
            yield local.scheduler_address
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture
def humans(tmp_path, speech_file):
    """<root>/hindi/human with 3 short transcribed espeak-ng clips by two speakers."""
    root = tmp_path / "mine"
    human = root / "hindi" / "human"
    human.mkdir(parents=True)
    for i, text in enumerate(TEXTS):
        clip = speech_file(f"x{i}.wav", language="hi", text=text, variant="m3" if i % 2 else "f2")
        clip.rename(human / f"s{i % 2}_{i}.wav")
    lines = [f"hindi/human/s{i % 2}_{i}.wav,{text}" for i, text in enumerate(TEXTS)]
    (root / "manifest.csv").write_text("path,text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return root


def _relative(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """The manifest with paths under the data root written relative to it (two roots compare equal)."""
    out = frame.copy()
    out["path"] = [os.path.relpath(p, root.resolve()) if str(p).startswith(str(root.resolve())) else p
                   for p in out["path"]]
    return out.sort_values("path").reset_index(drop=True)


@pytest.mark.skipif(not engine.is_available(), reason="espeak-ng (espeakng-loader) is not available")
def test_cluster_collection_writes_the_serial_manifest(tmp_path, humans, scheduler):
    if not ENGINES["world-dio"].available()[0]:
        pytest.skip(ENGINES["world-dio"].available()[1])
    common = dict(human_sources=[], tts_engines=["espeak", "world-dio"], local_dirs=[humans], seed=0)
    serial = collect_all(tmp_path / "a", CollectConfig(workers=1, **common), language="hindi")
    spread = collect_all(tmp_path / "b", CollectConfig(dask_scheduler=scheduler, **common), language="hindi")
    assert (serial["engine"] == "world-dio").sum() == len(TEXTS)  # the vocoder jobs went through render
    a, b = _relative(serial, tmp_path / "a"), _relative(spread, tmp_path / "b")
    rendered = a["engine"] == "world-dio"
    assert a.loc[rendered, "hash"].tolist() == b.loc[rendered, "hash"].tolist()  # the workers' files: byte-identical
    # espeak-ng runs in the driver either way, and its samples vary from call to call within a process: not its hash
    pd.testing.assert_frame_equal(a.drop(columns="hash"), b.drop(columns="hash"))
    assert not list((tmp_path / "b" / "collect_state").glob("shared-*"))  # the storage check cleaned up


def _jobs(root: Path, *, kill_flag: str = "") -> list[synth.Job]:
    """Eight tone jobs; the third kills the worker that runs it (once: it leaves `kill_flag` behind)."""
    return [synth.Job("dask_jobs", root / "audio" / f"tone{i}.flac",
                      dict(freq=200.0 + 50 * i, kill_flag=kill_flag if i == 2 else ""),
                      dict(language="hindi", label="ai", source="tone", engine="tone")) for i in range(8)]


def test_a_killed_worker_loses_only_its_clip_and_a_rerun_completes(tmp_path, scheduler):
    flag = tmp_path / "killed.txt"
    jobs = _jobs(tmp_path, kill_flag=str(flag))
    try:
        failures = synth.render(jobs, scheduler=scheduler, shared_root=tmp_path, desc="tones")
    except Exception as exc:  # noqa: BLE001 - Dask may give up on the clip instead of retrying it elsewhere
        failures = {"run": repr(exc)}
    print("first run:", failures or "finished on the other worker")
    assert flag.is_file()  # a worker process really died mid-run
    assert int(flag.read_text()) != os.getpid()
    made = {j.path for j in jobs if Path(j.path).is_file()}
    assert len(made) >= len(jobs) - 2 or not failures  # only the dead worker's unfinished clips are missing
    assert synth.render(jobs, scheduler=scheduler, shared_root=tmp_path, desc="tones") == {}  # rerun completes
    assert all(Path(j.path).is_file() for j in jobs)
    assert len(synth.rows_of(jobs)) == len(jobs)


class _BlindClient:
    """A client whose one worker cannot see the driver's files (a data root on local disk)."""

    class scheduler:  # noqa: N801 - mimics Client.scheduler.address
        address = "tcp://10.0.0.1:8786"

    def run(self, function, *args):
        return {"tcp://10.0.0.2:40000": False, "tcp://10.0.0.3:40000": function(*args)}


def test_a_data_root_workers_cannot_see_is_refused_in_one_line(tmp_path, scheduler):
    with distributed.Client(scheduler) as client:
        client.wait_for_workers(2, timeout=60)  # the worker killed above is restarted by its nanny
        assert cluster.check_shared(client, tmp_path) == 2
    with pytest.raises(DataError, match=r"not visible to dask worker\(s\) tcp://10.0.0.2:40000.*every worker mounts"):
        cluster.check_shared(_BlindClient(), tmp_path)
    assert not list((tmp_path / "collect_state").glob("shared-*"))
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        cluster.connect("localhost:8786")
