"""``replaymask methods --verified``: the side-by-side records, from a file the test writes."""

import json

from replaymask import cli


def record(method, ours, theirs, published=None, replaymask_variants=(), **extra):
    return {"published": published, "replaymask_variants": list(replaymask_variants),
            "method": method, "buffer_size": 200, "seeds": [0, 1],
            "dataset": "seq-mnist", "date": "2026-12-03T12:00:00+00:00",
            "mammoth_commit": "e75a4910000000000000000000000000000000000",
            "replaymask_commit": "a594564", "arguments": {"mammoth": "m", "replaymask": "r"},
            "replaymask": {"class_il": ours[0], "task_il": ours[1], "median_wall_s": 1.0},
            "mammoth": {"class_il": theirs[0], "task_il": theirs[1], "median_wall_s": 2.0,
                        **extra},
            "machine": {"cores": 2}, "notes": []}


def verified(monkeypatch, capsys, path):
    monkeypatch.setenv(cli.VERIFIED_FILE_VARIABLE, str(path))
    code = cli.main(["methods", "--verified"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    return {line.split()[0]: line for line in captured.out.splitlines()[2:]
            if line and not line.startswith(" ")}, captured.out


def test_the_table_gives_both_tools_means_and_the_difference(tmp_path, monkeypatch, capsys):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([
        record("agem", ([60.0, 62.0], [95.0, 97.0]), ([58.0, 59.0], [96.0, 96.0]),
               published={"source": "DER paper, Table 2", "class_il": 45.72,
                          "task_il": 98.61, "seeds": 10,
                          "compared_with": "replaymask, the DER paper's minibatch_size 128"},
               replaymask_variants=[{"name": "replaymask, the DER paper's minibatch_size 128",
                                     "class_il": [49.0, 51.0], "task_il": [98.0, 98.0]}]),
        record("mer", ([80.0], [97.5]), ([79.5], [97.0]), timed_out_seeds=[1]),
    ]))
    lines, out = verified(monkeypatch, capsys, path)
    assert str(path) in out.splitlines()[0]
    agem = lines["agem"].split()
    assert agem[1:3] == ["Mammoth", "e75a491,"] and "2026-12-03" in agem
    # buffer, seeds, then Class-IL ours, Mammoth, diff, then Task-IL ours, Mammoth, diff
    assert agem[-8:] == ["200", "2", "61.00", "58.50", "+2.50", "96.00", "96.00", "+0.00"]
    assert lines["mer"].split()[-8:] == ["200", "1", "80.00", "79.50", "+0.50", "97.50",
                                         "97.00", "+0.50"]
    assert "Mammoth stopped (time limit) for seeds 1" in out
    assert ("DER paper, Table 2: Class-IL 45.72, Task-IL 98.61; replaymask, the DER paper's "
            "minibatch_size 128 (2 seeds): 50.00, 98.00") in out
    assert lines["lode"].endswith("not in Mammoth")
    assert lines["gem"].endswith("not checked against Mammoth")
    assert lines["er"].endswith("not checked against Mammoth")  # no vs_mammoth.json beside
    listed = [name for name in lines]  # every method, in the declared order
    assert listed == list(cli.declarations())


def test_the_date_is_the_newest_run_of_either_tool(tmp_path, monkeypatch, capsys):
    rerun = record("gem", ([83.0], [98.0]), ([84.0], [98.0]))
    rerun["replaymask"]["runs"] = [{"seed": 0, "date": "2026-12-04T00:10:00+00:00"}]
    rerun["mammoth"]["runs"] = [{"seed": 0, "date": "2026-12-03T15:00:00+00:00"}]
    unrun = record("agem", ([31.0], [97.0]), ([32.0], [98.0]))  # no runs: the record's date
    path = tmp_path / "records.json"
    path.write_text(json.dumps([rerun, unrun]))
    lines, out = verified(monkeypatch, capsys, path)
    assert "last run" in out.splitlines()[1]
    assert "2026-12-04" in lines["gem"].split() and "2026-12-03" in lines["agem"].split()


def test_a_missing_file_is_one_line_and_exit_0(tmp_path, monkeypatch, capsys):
    path = tmp_path / "absent.json"
    monkeypatch.setenv(cli.VERIFIED_FILE_VARIABLE, str(path))
    assert cli.main(["methods", "--verified"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and str(path) in out and "does not exist" in out


def test_the_default_file_is_at_the_repository_root(monkeypatch):
    monkeypatch.delenv(cli.VERIFIED_FILE_VARIABLE, raising=False)
    path = cli.verified_file()
    assert path.parts[-2:] == ("results", "vs_mammoth_methods.json")
    assert (path.parents[1] / "src" / "replaymask" / "cli.py").is_file()


def test_a_file_that_is_not_records_is_a_usage_error(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"method": "agem"}')
    monkeypatch.setenv(cli.VERIFIED_FILE_VARIABLE, str(path))
    assert cli.main(["methods", "--verified"]) == 2
    assert "not a list of side-by-side records" in capsys.readouterr().err


def test_er_and_derpp_come_from_the_first_side_by_side_file_beside_it(tmp_path, monkeypatch,
                                                                      capsys):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([]))
    runs = [{"model": "er", "seed": seed, "variant": variant, "class_il": c, "task_il": t}
            for seed, variant, c, t in ((0, "replaymask", 79.0, 97.0),
                                        (1, "replaymask", 81.0, 98.0),
                                        (0, "mammoth --num_workers 0", 78.0, 98.0),
                                        (1, "mammoth --num_workers 0", 79.0, 98.0),
                                        (0, "mammoth (default workers)", 10.0, 10.0))]
    (tmp_path / "vs_mammoth.json").write_text(json.dumps({
        "versions": {"date": "2026-11-29T20:43:28+00:00", "mammoth_commit": "e75a491abc"},
        "summary": [], "runs": runs}))
    lines, _ = verified(monkeypatch, capsys, path)
    assert lines["er"].split()[-8:] == ["200", "2", "80.00", "78.50", "+1.50", "97.50",
                                        "98.00", "-0.50"]
    assert "2026-11-29" in lines["er"]
    assert lines["derpp"].endswith("not checked against Mammoth")


def test_each_buffer_of_a_method_is_its_own_row_named_by_the_method(tmp_path, monkeypatch,
                                                                    capsys):
    published = {"source": "DER paper, Table 2", "class_il": 45.0, "task_il": 98.0,
                 "seeds": 10, "compared_with": "replaymask, a variant"}
    variant = [{"name": "replaymask, a variant", "class_il": [47.0], "task_il": [98.0]}]
    at_500 = record("agem", ([70.0], [97.0]), ([69.0], [97.0]), published=published,
                    replaymask_variants=variant)
    at_500["buffer_size"] = 500
    path = tmp_path / "records.json"
    path.write_text(json.dumps([
        at_500, record("agem", ([60.0], [95.0]), ([58.0], [96.0]), published=published,
                       replaymask_variants=variant)]))
    monkeypatch.setenv(cli.VERIFIED_FILE_VARIABLE, str(path))
    assert cli.main(["methods", "--verified"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("agem")]
    # one row per buffer, in buffer order, each starting with the method's name
    assert [(row[0], row[-8]) for row in rows] == [("agem", "200"), ("agem", "500")]
