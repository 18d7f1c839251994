"""The ``frugalrec`` command end to end: validate, export-split, evaluate, re-scoring."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import pytest

from frugalrec.cli import main


def test_validate_good_file_prints_summary(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "i.csv"
    f.write_text("user,item,timestamp\nu,a,1\nv,b,2\n")
    assert main(["data", "validate", "--interactions", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["summary"]["interactions"] == 2 and out["summary"]["users"] == 2


def test_validate_bad_file_lists_problems_without_traceback(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "bad.csv"
    f.write_text("user,item,rating\nu,a,1\nu,b,oops\n,c,2\n")
    assert main(["data", "validate", "--interactions", str(f)]) == 1
    err = capsys.readouterr().err
    assert "bad.csv:3 [rating]: not a number" in err and "bad.csv:4 [user]: empty value" in err
    assert "Traceback" not in err


def test_evaluate_usage_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["evaluate", "--train", "x.csv", "--quiet"]) == 2
    assert "needs all of --train" in capsys.readouterr().err
    assert main(["evaluate", "--models", "nope", "--quiet"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_evaluate_on_own_files_writes_json_and_recs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = ["user,item"]
    # 30 users in two taste groups, 12 items each user: enough for every split stage.
    for u in range(30):
        block = range(0, 15) if u % 2 else range(15, 30)
        rows += [f"u{u},i{j}" for j in list(block)[(u % 3) : (u % 3) + 12]]
    f = tmp_path / "i.csv"
    f.write_text("\n".join(rows) + "\n")
    out, recs = tmp_path / "out.json", tmp_path / "recs.csv"
    code = main(
        [
            "evaluate",
            "--interactions",
            str(f),
            "--models",
            "ease",
            "--no-tune",
            "--json",
            str(out),
            "--recs-out",
            str(recs),
            "--quiet",
            "--bootstrap",
            "50",
        ]
    )
    assert code == 0
    payload = json.loads(out.read_text())
    assert set(payload) >= {"dataset", "protocol", "results"}
    res = payload["results"][0]
    assert set(res) >= {"model", "config", "metrics", "ci95", "fit_seconds"}
    for k in (10, 20):
        for m in ("ndcg", "recall", "mrr", "hr", "precision", "coverage", "novelty"):
            assert f"{m}@{k}" in res["metrics"]
    with open(recs) as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["user", "item", "rank", "score"]
        first = next(reader)
    assert first["user"].startswith("u") and first["item"].startswith("i") and first["rank"] == "1"


@pytest.mark.slow
def test_exported_recs_rescored_independently(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The top-20 lists, re-scored by a from-scratch NDCG, match the reported NDCG@10."""
    split_dir = tmp_path / "split"
    assert (
        main(
            [
                "export-split",
                "--dataset",
                "ml-100k",
                "--protocol",
                "random",
                "--out",
                str(split_dir),
            ]
        )
        == 0
    )
    out, recs = tmp_path / "out.json", tmp_path / "recs.csv"
    assert (
        main(
            [
                "evaluate",
                "--train",
                str(split_dir / "train.csv"),
                "--valid",
                str(split_dir / "valid.csv"),
                "--test",
                str(split_dir / "test.csv"),
                "--items",
                str(split_dir / "items.csv"),
                "--models",
                "ease",
                "--no-tune",
                "--json",
                str(out),
                "--recs-out",
                str(recs),
                "--quiet",
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    reported = json.loads(out.read_text())["results"][0]["metrics"]["ndcg@10"]

    def read(name: str) -> dict[str, set[str]]:
        d: dict[str, set[str]] = defaultdict(set)
        with open(split_dir / name) as fh:
            for row in csv.DictReader(fh):
                d[row["user"]].add(row["item"])
        return d

    train, valid, test = read("train.csv"), read("valid.csv"), read("test.csv")
    lists: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with open(recs) as fh:
        for row in csv.DictReader(fh):
            lists[row["user"]].append((int(row["rank"]), row["item"]))
    total = 0.0
    for user, relevant in test.items():
        ranked = [item for _, item in sorted(lists[user])][:10]
        assert not set(ranked) & (train[user] | valid[user]), "seen items must not be recommended"
        dcg = sum(1 / math.log2(r + 2) for r, item in enumerate(ranked) if item in relevant)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), 10)))
        total += dcg / idcg
    assert abs(total / len(test) - reported) < 0.001
    assert reported > 0.3  # EASE on ml-100k random is far above popularity (~0.14)


@pytest.mark.slow
def test_cold_items_on_an_external_split(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--cold-items restricts ranking (and the exported lists) to those items."""
    split_dir = tmp_path / "split"
    assert main(["export-split", "--dataset", "ml-100k", "--protocol", "cold-item",
                 "--out", str(split_dir)]) == 0  # fmt: skip
    with open(split_dir / "cold_items.csv") as fh:
        cold = {row["item"] for row in csv.DictReader(fh)}
    out, recs = tmp_path / "out.json", tmp_path / "recs.csv"
    d = split_dir
    assert main([
        "evaluate", "--train", str(d / "train.csv"), "--valid", str(d / "valid.csv"),
        "--test", str(d / "test.csv"), "--items", str(d / "items.csv"),
        "--cold-items", str(split_dir / "cold_items.csv"), "--models", "textmap",
        "--encoder", "static", "--no-tune", "--json", str(out), "--recs-out", str(recs),
        "--quiet", "--bootstrap", "10",
    ]) == 0  # fmt: skip
    with open(recs) as fh:
        items = {row["item"] for row in csv.DictReader(fh)}
    assert items and items <= cold
    ndcg = json.loads(out.read_text())["results"][0]["metrics"]["ndcg@10"]
    assert ndcg > 0.2  # text scores items no one has interacted with


def test_hardware_lists_profiles_shows_sources_and_checks_a_user_yaml(  # type: ignore[no-untyped-def]
    tmp_path, capsys
) -> None:
    assert main(["hardware", "--json"]) == 0
    profiles = json.loads(capsys.readouterr().out)
    assert {"cpu16", "t4", "a10g", "l4", "h100"} <= set(profiles)
    assert profiles["h100"]["mem_bandwidth_gbs"] == 3350
    assert profiles["h100"]["launch_us"] > 0 and profiles["cpu16"]["launch_us"] is None
    assert main(["hardware"]) == 0
    table = capsys.readouterr().out
    assert "h100" in table and "3350" in table and "launch us" in table
    assert main(["hardware", "h100"]) == 0
    shown = capsys.readouterr().out
    assert "launch_us" in shown and "fitted" in shown and "datasheet" in shown
    # A user's own profile is loaded next to the shipped ones, and checked.
    mine = tmp_path / "hw.yaml"
    mine.write_text(
        "profiles:\n  mybox:\n    kind: cpu\n    cores: 8\n    memory_gb: 32\n"
        "    mem_bandwidth_gbs: 50\n    peak_tflops: {fp32: 1.0}\n    usd_per_hour: 0.3\n"
        "    sources: {cores: a, memory_gb: b, mem_bandwidth_gbs: c, peak_tflops: d,"
        " usd_per_hour: e}\n"
    )
    assert main(["hardware", "mybox", "--file", str(mine), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cores"] == 8
    mine.write_text("profiles:\n  mybox:\n    kind: gpu\n    cores: 10\n")
    assert main(["hardware", "--file", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "hw.yaml" in err and "profiles.mybox.peak_tflops" in err
    assert main(["hardware", "nope"]) == 2
    assert "unknown hardware profile 'nope'" in capsys.readouterr().err
