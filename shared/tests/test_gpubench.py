"""The GPU-run driver (tenfold.gpubench) and the data pack (tenfold.gpupack), on the CPU with stand-in packages."""
import io
import json
import lzma
import textwrap

import numpy as np
import pytest
import torch
from tenfold import gpubench, gpupack, nets
from tenfold.errors import DataError

# Stand-in packages write the contract's JSON by hand: importing torch would take most of a short timeout on a
# loaded CI machine (GpuReport itself is tested in test_precision_device.py).
GPU_PY = textwrap.dedent('''
    import argparse, json, os, sys, time
    ap = argparse.ArgumentParser()
    for a in ("--out", "--budget", "--data-root", "--models-root"):
        ap.add_argument(a)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--long", action="store_true")
    args = ap.parse_args()
    rep = {{"package": "{name}", "device": "cpu", "torch": "-", "smoke": args.smoke, "skipped": None,
            "rows": [{{"what": "budget given", "value": float(args.budget), "unit": "s"}},
                     {{"what": "long", "value": float(args.long), "unit": "flag"}}]}}
    def write():
        with open(os.path.join(args.out, "{name}.json"), "w") as f:
            json.dump(rep, f)
    write()
    {body}
''')


def _pkg(root, name, body="pass"):
    d = root / "packages" / name
    (d / "bench").mkdir(parents=True)
    (d / "pyproject.toml").write_text("")
    if body is not None:
        (d / "bench" / "gpu.py").write_text(GPU_PY.format(name=name, body=body))


@pytest.fixture
def fake_repo(tmp_path):
    (tmp_path / "shared").mkdir()
    _pkg(tmp_path, "a_ok")
    _pkg(tmp_path, "b_fail", "sys.exit(3)")
    _pkg(tmp_path, "c_hang", "time.sleep(60)")
    _pkg(tmp_path, "d_skip", "rep['skipped'] = 'teacher missing: models/x.pt'; write()")
    _pkg(tmp_path, "e_missing", None)
    return tmp_path


def test_shares_split_what_is_left():
    assert gpubench.shares(100, ["a", "b", "c", "d"]) == 25
    assert gpubench.shares(90, ["c", "d"], {"c": 2.0}) == 60
    assert gpubench.shares(-5, ["a"]) == 0


def test_driver_statuses_timeout_and_summary(fake_repo, monkeypatch):
    monkeypatch.setattr(gpubench, "SMOKE_TIMEOUT_S", 5.0)
    out = fake_repo / "out"
    res = gpubench.run_all(fake_repo, out, budget_s=100, smoke=True, log=lambda s: None)
    status = {r["package"]: r["status"] for r in res}
    assert status == {"a_ok": "ok", "b_fail": "failed", "c_hang": "timed out", "d_skip": "skipped",
                      "e_missing": "missing"}
    hang = next(r for r in res if r["package"] == "c_hang")
    assert [r["what"] for r in hang["rows"]] == ["budget given", "long"]  # written before the kill: kept
    assert 4.5 < hang["seconds"] < 15
    assert json.loads((out / "a_ok.json").read_text())["smoke"] is True
    md = (out / "summary.md").read_text()
    assert "| a_ok | ok |" in md and "| c_hang | timed out" in md and "teacher missing: models/x.pt" in md
    assert "| budget given | 25 | s |" in md and "# GPU benchmark — cpu" in md  # device from the reports
    assert json.loads((out / "summary.json").read_text())["results"][1]["note"].startswith("exit 3")
    assert gpubench.failed(res, allow_missing=True) == ["b_fail", "c_hang"]
    assert gpubench.failed(res, allow_missing=False) == ["b_fail", "c_hang", "e_missing"]


def test_driver_budget_flows_to_later_packages(fake_repo):
    out = fake_repo / "out"
    res = gpubench.run_all(fake_repo, out, budget_s=200, packages=["a_ok", "d_skip"], long=True,
                           log=lambda s: None)
    given = [next(r["value"] for r in x["rows"] if r["what"] == "budget given") for x in res]
    assert given[0] == 100 - gpubench.STARTUP_S  # half of 200
    assert given[1] > 170  # the first package's unused time went to the second
    assert all(next(r["value"] for r in x["rows"] if r["what"] == "long") == 1.0 for x in res)


def test_driver_cli_exit_status(fake_repo, capsys):
    out = str(fake_repo / "out")
    assert gpubench.main(["--root", str(fake_repo), "--out", out, "--smoke", "--packages", "a_ok,d_skip"]) == 0
    assert gpubench.main(["--root", str(fake_repo), "--out", out, "--smoke", "--packages", "a_ok,e_missing"]) == 1
    assert gpubench.main(["--root", str(fake_repo), "--out", out, "--smoke", "--allow-missing",
                          "--packages", "e_missing"]) == 0
    assert gpubench.main(["--root", str(fake_repo), "--out", out, "--budget", "soon"]) == 2
    assert "--budget must be seconds or 'long'" in capsys.readouterr().err


def _jpeg_pack(path, labels):
    from PIL import Image

    rng = np.random.default_rng(0)
    blobs, offsets = [], [0]
    for _ in labels:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        offsets.append(offsets[-1] + len(blobs[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=np.array(offsets), labels=np.array(labels),
             classes=np.array([str(i) for i in range(10)]))


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for split in ("train", "test"):
        _jpeg_pack(root / "cifar10" / f"{split}.npz", [i % 10 for i in range(30)])
        (root / "mnist").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / "mnist" / f"{split}.npz", images=np.zeros((40, 28, 28), np.uint8),
                            labels=np.arange(40) % 10)
    (root / "uci").mkdir()
    (root / "uci" / "events.csv").write_text("src,dst,t\n" + "".join(f"{i},{i + 1},{i}\n" for i in range(3000)))
    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    teacher = nets.create("wrn16_1", 10)
    torch.save(teacher.state_dict(), models / "t.pt")
    (models / "t.json").write_text(json.dumps({"arch": "wrn16_1", "num_classes": 10, "test_top1": 0.1}))
    return root, models, teacher


def test_small_pack_layout_and_float16_teacher(fake_data, tmp_path):
    root, models, teacher = fake_data
    dest = tmp_path / "pack"
    man = gpupack.build_pack(dest, root, models, small=True, graphs=("uci", "enron"), log=lambda s: None)
    assert man["data"]["cifar10/test"] == 30 and man["data"]["mnist/train"] == 40  # < 10 per class: all kept
    assert man["data"]["uci"] == 2000  # small: the first 2000 events
    assert man["missing"] == ["enron/events.csv"] and man["pylib"] == ["yaml"]
    # JPEG bytes copied, not re-encoded: the kept images decode to exactly the original pixels
    assert gpupack.subset_jpeg_pack(root / "cifar10" / "train.npz", tmp_path / "sub.npz", 2) == 20
    src, sub = np.load(root / "cifar10" / "train.npz"), np.load(tmp_path / "sub.npz")
    assert list(sub["labels"]) == [i % 10 for i in range(20)]  # the first two of every class, in order
    assert bytes(sub["jpeg"][sub["offsets"][3]:sub["offsets"][4]]) == bytes(
        src["jpeg"][src["offsets"][3]:src["offsets"][4]])
    # the teacher: stored float16, loaded back float32 with the float16-rounded values, checked
    sd = torch.load(dest / "models" / "t.pt", weights_only=True)
    assert all(v.dtype == (torch.float16 if v.is_floating_point() else torch.int64) for v in sd.values())
    back = nets.load_teacher(dest / "models" / "t.pt")
    for (k, a), b in zip(back.state_dict().items(), teacher.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b.half().to(b.dtype) if b.is_floating_point() else b), k
    meta = json.loads((dest / "models" / "t.json").read_text())
    assert meta["stored_dtype"] == "float16" and meta["pack_test_top1"] == man["teachers"][0]["float32_test_top1"]
    # the graphs travel xz-compressed; materialize expands them and links the rest
    assert not (dest / "data" / "uci" / "events.csv").exists()
    work = gpubench.materialize(dest, tmp_path / "work")
    assert (work / "uci" / "events.csv").read_text().count("\n") == 2001
    assert (work / "cifar10" / "test.npz").is_symlink()
    assert lzma.decompress((dest / "data" / "uci" / "events.csv.xz").read_bytes()).startswith(b"src,dst,t\n0,1,0")


def test_pack_size_limit_and_teacher_check_fail_loudly(fake_data, tmp_path):
    root, models, _ = fake_data
    with pytest.raises(DataError, match="over the 0.5 MiB limit"):
        gpupack.build_pack(tmp_path / "p1", root, models, small=True, check=False, limit_mib=0.5, log=print)
    # full mode compares with the JSON's test_top1 (0.1 here): a teacher that does not reach it is refused
    (models / "t.json").write_text(json.dumps({"arch": "wrn16_1", "num_classes": 10, "test_top1": 0.99}))
    with pytest.raises(DataError, match="float16 copy scores"):
        gpupack.build_pack(tmp_path / "p2", root, models, train_per_class=1, log=lambda s: None)
    with pytest.raises(DataError, match="not a pack"):
        (tmp_path / "p3").mkdir()
        (tmp_path / "p3" / "keep.txt").write_text("x")
        gpupack.build_pack(tmp_path / "p3", root, models, small=True, log=lambda s: None)
