"""The benchmark suite runs end to end, and its hand-written GRU is a fair reference.

No timing is asserted: the suite measures, these tests only check that it does. The
hand-written GRU is what the generated gru kernel is timed against, so its gradients are
checked here against the kernel's and, independently of the engine, against central
differences.
"""
import json
import os
import pathlib
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import ab  # noqa: E402
import bench  # noqa: E402
import gemms  # noqa: E402
import handwritten_gru  # noqa: E402
import lengths  # noqa: E402
import memory  # noqa: E402
import profile_lines  # noqa: E402
import streams  # noqa: E402
from lstm_derive.gradcheck import check_kernel  # noqa: E402
from lstm_derive.kernels import gru  # noqa: E402

T, B, D, H = 3, 2, 3, 4
# .ci/run installs torch: there, a suite that ran without it would pass its PyTorch rows unproven
TORCH = bench.torch_reference.available() or bool(os.environ.get("CI"))


def problem(kernel, scale=None, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = kernel.init_params(D, H, seed=seed, scale=scale, dtype=dtype)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in kernel.STATES)
    dys = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in kernel.STATES)
    return params, x, state, dys, dstate


def gradients(kernel, params, x, state, dys, dstate):
    """Every gradient backward returns, by name."""
    _, _, cache = kernel.forward(params, x, state)
    grads, dx, dstate0 = kernel.backward(params, cache, dys, dstate)
    out = dict(grads, x=dx)
    out.update({f"state0_{n}": d for n, d in enumerate(dstate0)})
    return out


def relative_errors(got, ref):
    assert got.keys() == ref.keys()
    return {k: np.max(np.abs(got[k] - ref[k])) / np.max(np.abs(ref[k])) for k in ref}


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_handwritten_gru_matches_the_generated_gru(dtype):
    p = problem(gru, scale=1.0, dtype=dtype)
    mine = handwritten_gru.forward(*p[:3])
    theirs = gru.forward(*p[:3])
    np.testing.assert_allclose(mine[0], theirs[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(mine[1][0], theirs[1][0], rtol=1e-13, atol=1e-13)
    errors = relative_errors(gradients(handwritten_gru, *p), gradients(gru, *p))
    assert max(errors.values()) < 1e-12, errors


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_handwritten_gru_matches_central_differences(scale):
    (report,) = check_kernel(handwritten_gru, T=T, B=B, D=D, H=H, seed=1, scale=scale, methods=("central",))
    assert report.ok, str(report)


def test_handwritten_gru_keeps_float32():
    p = problem(handwritten_gru, dtype=np.float32)
    ys, (h_T,), _ = handwritten_gru.forward(*p[:3])
    got = gradients(handwritten_gru, *p)
    assert {a.dtype for a in (ys, h_T, *got.values())} == {np.dtype(np.float32)}


def test_peak_growth_sees_numpy_arrays():
    peak, held = memory.peak_growth(lambda: np.ones(2**17).sum())   # 1 MiB, freed at once
    assert 2**20 <= peak < 2**20 + 2**16
    assert held < 2**12


def test_gemm_replay_counts_the_kernels_flops():
    run, flops = gemms.replay(gru, T, B, D, H, np.float64)
    run()
    # input weight: 3 GEMMs of T*B x D x 3H; recurrent: 2T of B x H x 3H and one T*B x H x 3H
    assert flops == 3 * 2 * T * B * D * 3 * H + 3 * 2 * T * B * H * 3 * H


def test_gemm_layouts_compare_the_forward_steps_two_layouts_and_the_copys_cost(capsys):
    assert gemms.main(["--rounds", "2"]) is None
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["size", "dtype", "W", "rows", "view", "us", "contig", "us", "contig/view", "copy", "us"]
    assert len(rows) == 1 + 2 * 5 * 2 and all(float(v) > 0 for row in rows[1:] for v in row.split()[-4:])


def test_bench_runs_end_to_end_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    status = bench.main(["--quick", "--repeat", "1", "--pause", "0", "--sizes", "3,1,3,4",
                         "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "settings", "gemm_throughput", "cases", "derive_emit", "targets"}
    assert set(report["gemm_throughput"]) == {"start", "end"}
    assert set(report["gemm_throughput"]["start"]) == {"float32", "float64"}
    assert report["derive_emit"]["total_s"] > 0 and report["derive_emit"]["cells"] >= 2
    cases = {(c["cell"], c["dtype"]): c for c in report["cases"]}
    assert set(cases) == {(cell, dt) for cell in ("lstm", "gru", "lstm_seed") for dt in ("float32", "float64")}
    for (cell, _), c in cases.items():
        assert (c["T"], c["B"], c["D"], c["H"]) == (3, 1, 3, 4)
        want = {"generated", "gemms"}
        want |= {"seed"} if cell == "lstm_seed" else {"handwritten"} | ({"torch"} if TORCH else set())
        assert set(c["results"]) == want
        for r in c["results"].values():
            assert {"median_ms", "min_ms", "max_ms", "n"} <= set(r) and r["n"] == 1
        assert set(c["ratios"]) == {f"generated/{n}" for n in want - {"generated", "gemms"}}
        assert set(c["checks"]) == want - {"generated", "gemms"}
        assert all(check["ok"] for check in c["checks"].values())
        assert c["gemm_share"] > 0 and c["gemm_flops"] > 0
        assert c["min_activation"]["k"] == memory.ACTIVATIONS[cell][0]
        assert c["memory"]["generated"]["peak_bytes"] > 0
        assert set(c["bounds"]) == set(c["ratios"]) and all(b > 0 for b in c["bounds"].values())
        assert c["memory"]["generated"]["bound"] > 1
    assert all({"target", "where", "value", "limit", "met", "bound"} == set(t) for t in report["targets"])
    for cell in ("lstm", "gru", "lstm_seed"):
        assert f"{cell} 3,1,3,4 (T=3, B=1, D=3, H=4) float64" in printed
    # the saved report prints again as the run printed it
    # the keys a plot reads are named where README describes the report
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Benchmarks"):readme.index("## Examples")]
    keys = set(report) | set(report["machine"]) | set(report["settings"]) | set(report["derive_emit"])
    keys |= set(report["gemm_throughput"]["start"]["float64"]) | set(report["targets"][0])
    for c in report["cases"]:
        keys |= set(c) | {k for r in c["results"].values() for k in r} | set(c["results"])
        keys |= {k for m in c["memory"].values() for k in m} | {k for m in c["checks"].values() for k in m}
        keys |= set(c["min_activation"])
    assert sorted(k for k in keys if f"`{k}`" not in section) == []
    assert bench.main(["--show", str(out)]) == 0
    again = capsys.readouterr().out
    def tables(text):
        lines = text.splitlines()
        return lines[next(n for n, line in enumerate(lines) if line.startswith("GEMM throughput")):]
    assert tables(again) == tables(printed)


def test_a_missed_target_is_shown_with_its_bound(capsys):
    case = {"cell": "lstm", "size": "S3", "dtype": "float32", "ratios": {"generated/handwritten": 0.95},
            "bounds": {"generated/handwritten": 0.93}, "gemm_share": 0.9,
            "memory": {"generated": {"ratio": 1.2, "bound": 1.1}}}
    rows = bench.evaluate_targets([case], None)
    assert [(r["met"], r["bound"]) for r in rows] == [(False, 0.93), (True, None), (True, 1.1)]
    bench.print_targets(rows)
    printed = capsys.readouterr().out
    assert "missed: lstm S3 float32 0.95 (bound 0.93)" in printed and "2 met, 1 missed" in printed


def test_a_busy_machine_is_said_to_make_the_run_unreliable(capsys):
    probe = lambda gflops: {"float32": {"best_gflops": gflops}}  # noqa: E731
    # one round in a hundred preempted: a quiet machine's millisecond calls
    outlier = {"generated": {"times_ms": [2.0] * 99 + [9.0]}}
    steady = {"cell": "gru", "size": "S2", "dtype": "float32",
              "results": {"generated": {"times_ms": [20.0, 21.0, 22.0, 23.0, 24.0]},
                          "hand-written NumPy": {"times_ms": [5.1, 5.5, 6.0, 6.5, 7.0]}}}
    quiet = {"start": probe(120), "end": probe(110)}
    assert bench.disturbances(quiet, [steady, dict(steady, results=outlier)]) == []
    steady["results"]["hand-written NumPy"]["times_ms"] = [5.1, 5.2, 8.0, 9.0, 10.3]  # any contender's rounds count
    case = {"cell": "lstm", "size": "S2", "dtype": "float32", "results": {"generated": {"times_ms": [93.3, 100, 400, 818.6]}}}
    found = bench.disturbances({"start": probe(13.4), "end": probe(123.8)}, [case, steady])
    assert found == ["float32 GEMM throughput 13 GFLOP/s at the start, 124 at the end",
                     "lstm S2 float32 generated: the middle half of its rounds took 95-714 ms",
                     "gru S2 float32 hand-written NumPy: the middle half of its rounds took 5.15-9.65 ms"]
    bench.print_disturbances(found)
    assert capsys.readouterr().out.startswith("NOTE the machine was busy during this run (float32 GEMM")
    quick = dict(steady, results={"generated": {"times_ms": [300.0, 1800.0, 900.0]}})  # --quick: no quartiles
    assert bench.disturbances(quiet, [quick]) == []
    bench.print_disturbances([], cases=[steady, quick])
    assert capsys.readouterr().out.startswith("NOTE too few rounds a contender (3: --quick, or --repeat below 4)")
    bench.print_disturbances([], cases=[steady])
    assert capsys.readouterr().out == ""


def test_line_profile_runs(capsys):
    profile_lines.main(["gru", "--size", "3,2,3,4", "--calls", "1"])
    printed = capsys.readouterr().out
    assert "GEMM" in printed and "whole forward + backward" in printed


def test_ab_compares_two_kernel_files(capsys):
    kernel = pathlib.Path(gru.__file__)
    reference = pathlib.Path(handwritten_gru.__file__)
    assert ab.main([str(reference), str(kernel), "--sizes", "3,2,3,4", "--rounds", "2",
                    "--dtypes", "float32", "float64"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [["3,2,3,4", "float32"], ["3,2,3,4", "float64"]]
    for row in rows:
        ratio, spread, cpu_ratio, cpu_spread = row.split()[4:]
        for middle, low_high in ((float(ratio), spread), (float(cpu_ratio), cpu_spread)):
            low, high = map(float, low_high.split("-"))
            assert 0 < low <= high, row
            assert middle > 0, row


def test_interleave_also_records_cpu_time():
    """A contender that sleeps takes wall time but no CPU time: the CPU times tell them apart
    from one that computes, where a load that makes calls wait for a core blurs wall times."""
    def spin():
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass

    impls = {"sleeps": bench.Impl("sleeps", "sleeps", "numpy", lambda: time.sleep(0.01)),
             "spins": bench.Impl("spins", "spins", "numpy", spin)}
    cpu = {}
    times = bench.interleave(impls, 3, 0, cpu=cpu)
    assert {name: len(t) for name, t in cpu.items()} == {"sleeps": 3, "spins": 3}
    assert min(times["sleeps"]) >= 0.009 and min(times["spins"]) >= 0.049
    # below 0.03, not 0: BLAS threads that spin on after an earlier test's GEMM count as CPU time
    assert max(cpu["sleeps"]) < 0.03 < 0.049 <= min(cpu["spins"])


def test_ab_refuses_kernels_whose_gradients_disagree(tmp_path):
    """A faster kernel that computes something else is no improvement."""
    wrong = tmp_path / "wrong_gru.py"
    source = pathlib.Path(gru.__file__).read_text()
    wrong_source = source.replace(", U_h) + z*dh", ", U_h)")  # the direct path of dL/dh_prev lost
    assert wrong_source != source
    wrong.write_text(wrong_source)
    with pytest.raises(SystemExit, match="the two kernels disagree"):
        ab.main([gru.__file__, str(wrong), "--sizes", "3,2,3,4", "--rounds", "1"])


def test_ab_says_how_to_write_the_older_kernel_it_lacks(tmp_path, monkeypatch):
    """README's `ab.py old_lstm.py ...` names a file that only `git show` makes."""
    monkeypatch.chdir(tmp_path)
    written_by = r"old_lstm.py: no such kernel file .*`git show HEAD:lstm_derive/kernels/lstm.py > old_lstm.py`"
    with pytest.raises(SystemExit, match=written_by):
        ab.main(["old_lstm.py", gru.__file__])


@pytest.mark.skipif(not TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_pytorch_runs_with_as_many_threads_as_numpys_openblas(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert bench.torch_reference.set_threads() == 1  # OpenBLAS reads its own variable first
        monkeypatch.delenv("OPENBLAS_NUM_THREADS")
        assert bench.torch_reference.set_threads() == 2
        assert bench.torch_reference.set_threads(1) == 1  # an explicit count wins
    finally:
        torch.set_num_threads(before)


def test_what_a_stream_and_the_dtypes_off_blas_cost_is_measured(capsys):
    assert streams.main(["--hidden", "4", "--steps", "3", "--rounds", "1", "--dtype-size", "3,2,3,4"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[:4] for r in rows[1:3]] == [["lstm", "H", "=", "4"], ["gru", "H", "=", "4"]]
    assert [r.split()[0] for r in rows[4:]] == ["float16", np.dtype(np.longdouble).name]
    assert all(float(r.split()[-1]) > 0 for r in rows[1:3] + rows[4:])


def test_the_cost_of_lengths_is_measured_for_each_case(capsys):
    assert lengths.main(["--sizes", "3,2,3,4", "--rounds", "2", "--dtypes", "float32", "float64"]) == 0
    title, header, *rows = capsys.readouterr().out.splitlines()
    assert title.startswith("forward + backward with lengths / without: ")  # which way the ratio goes
    assert [r.split()[:3] for r in rows] == [[c, "3,2,3,4", d] for c in ("lstm", "gru") for d in ("float32", "float64")]
    assert all(float(v) > 0 for r in rows for v in r.split()[3:])


def test_a_json_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys):
    """Not after minutes of measuring, when the report is lost."""
    for path in (tmp_path / "no such folder" / "out.json", tmp_path):
        with pytest.raises(SystemExit, match="give a file in an existing, writable directory"):
            bench.main(["--quick", "--sizes", "3,1,3,4", "--json", str(path)])
    assert capsys.readouterr().out == ""


def test_show_says_a_file_is_no_report(tmp_path):
    text, other = tmp_path / "notes.txt", tmp_path / "other.json"
    text.write_text("a run's notes\n")
    other.write_text('{"cases": []}\n')
    with pytest.raises(SystemExit, match="not a JSON report that --json wrote"):
        bench.main(["--show", str(text)])
    with pytest.raises(SystemExit, match="not a report that --json wrote .no machine, settings, gemm_throughput"):
        bench.main(["--show", str(other)])


def test_the_machine_line_says_pytorch_is_missing(capsys):
    info = {"python": "3", "numpy": "2", "blas": "openblas", "blas_version": "0", "torch": None,
            "torch_threads": None, "cpus": 2, "loadavg_start": None, "env": {}}
    bench.print_machine(info)
    printed = capsys.readouterr().out
    assert "PyTorch not installed" in printed and "None" not in printed.replace("load average None", "")


def test_ab_says_a_file_is_no_kernel_or_of_another_cell():
    from lstm_derive.kernels import lstm

    with pytest.raises(SystemExit, match=r"bench.py: not a kernel module \(no PARAMS, STATES, init_params"):
        ab.main([bench.__file__, gru.__file__])
    with pytest.raises(SystemExit, match=r"different cells: PARAMS \('W_x', 'W_h', 'b'\) in lstm.py"):
        ab.main([lstm.__file__, gru.__file__])


def test_ab_help_says_what_its_columns_and_defaults_are(capsys):
    with pytest.raises(SystemExit):
        ab.main(["--help"])
    printed = " ".join(capsys.readouterr().out.split())
    assert "cpu new/old and its middle half" in printed and "(default: 15)" in printed and "(default: S1)" in printed


def test_memory_prints_the_peak_against_the_minimum_activations(capsys):
    assert memory.main(["--cells", "lstm", "lstm_seed", "--sizes", "3,1,3,4", "3,2,3,4"]) == 0
    rows = [r.split() for r in capsys.readouterr().out.splitlines()[1:]]
    # the seed's algorithm is unbatched: it runs at B = 1 alone
    assert [r[:4] for r in rows] == [["lstm", "3,1,3,4", "float64", "generated"], ["lstm", "3,1,3,4", "float64", "hand-written"],
                                     ["lstm", "3,2,3,4", "float64", "generated"], ["lstm", "3,2,3,4", "float64", "hand-written"],
                                     ["lstm_seed", "3,1,3,4", "float64", "generated"], ["lstm_seed", "3,1,3,4", "float64", "seed"],
                                     ["lstm_seed", "3,2,3,4", "float64", "generated"]]
    for r in rows:
        peak, cache, returned, floor, k, ratio, bound = map(float, r[-7:])
        assert k == memory.ACTIVATIONS[r[0]][0]
        assert 0 < cache <= peak and returned > 0 and ratio >= bound > 1


def test_ab_keeps_a_space_between_columns_however_wide():
    """A ratio above 10 at a tiny size on a loaded machine ran into its neighbour."""
    line = ab.row("100,32,128,128", "float64", "1.000", "2.000", "12.345", "12.345-105.123", "11.000", "10.5-15.5")
    assert line.split() == ["100,32,128,128", "float64", "1.000", "2.000", "12.345", "12.345-105.123", "11.000", "10.5-15.5"]
