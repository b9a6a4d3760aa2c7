"""kerakit's benchmarks: one entry point, a table of ratios.

    python benchmarks/run.py            # --quick: a few minutes
    python benchmarks/run.py --full     # + every shipped config, steps_per_execution sweep
    python benchmarks/run.py --smoke    # seconds; what tests/test_benchmarks.py runs
    python benchmarks/run.py --json results.json

Measures, kerakit vs the same thing written by hand in tf.keras:
1. steady-state training samples/s of the Keras overview's MLP and CNN (batch 128),
   `kk.train` vs plain `model.fit(x, y)` on NumPy arrays, in interleaved rounds;
2. achieved training GFLOP/s as a share of this machine's measured matmul peak
   (float32, and bfloat16 where supported);
3. the augmentation ratios of benchmarks/augment.py, when it exists;
4. start-up: `import kerakit` vs `import tensorflow`, `kerakit check` rejecting a
   schema error, and the whole `kerakit train` process vs a hand-written script.

Results and the machine they were measured on: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import startup  # noqa: E402
import train_speed  # noqa: E402

# samples per epoch (MLP, CNN), epochs, interleaved rounds, matmul size and seconds,
# start-up repeats, whole-process repeats, every config?, steps_per_execution sweep
MODES = {
    "smoke": {"mlp": 512, "cnn": 256, "epochs": 2, "rounds": 1, "peak_n": 256, "peak_s": 0.2,
              "imports": 1, "process": 0, "configs": False, "sweep": ()},
    "quick": {"mlp": 51_200, "cnn": 12_800, "epochs": 4, "rounds": 3, "peak_n": 2048, "peak_s": 2.0,
              "imports": 3, "process": 2, "configs": False, "sweep": ()},
    "full": {"mlp": 76_800, "cnn": 19_200, "epochs": 4, "rounds": 5, "peak_n": 2048, "peak_s": 4.0,
             "imports": 5, "process": 4, "configs": True, "sweep": (1, 8, 32, 128)},
}  # fmt: skip


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = ""
    flags: set = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "bf16/amx": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "load": [round(v, 2) for v in load] if load else None,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _row(cells, widths):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table (pastes straight into benchmarks/README.md)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = [_row(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + [_row(r, widths) for r in rows])


def _mark(ratio: float, target: float) -> str:
    return "ok" if ratio >= target else ("below target" if ratio >= 1.0 else "SLOWER")


def throughput(mode: dict, results: dict) -> None:
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # each run retraces on purpose: fresh models
    print("\n## 1. Training throughput: kk.train vs plain model.fit(x, y) on NumPy\n", flush=True)
    rows = []
    for kind in ("mlp", "cnn"):
        rows += train_speed.compare([kind], samples=mode[kind], epochs=mode["epochs"],
                                    rounds=mode["rounds"])  # fmt: skip
    results["throughput"] = rows
    print(table(
        ["model (batch 128)", "hand-written samples/s", "kk.train samples/s", "ratio", "target 1.2x"],
        [[r["model"], f"{r['hand_sps']:,.0f}", f"{r['kerakit_sps']:,.0f}", f"{r['ratio']:.2f}x",
          _mark(r["ratio"], 1.2)] for r in rows],
    ))  # fmt: skip

    print("\n## 2. Achieved training GFLOP/s vs this machine's matmul peak\n", flush=True)
    f32 = train_speed.matmul_peak("float32", mode["peak_n"], mode["peak_s"])
    bf16 = train_speed.matmul_peak("bfloat16", mode["peak_n"], mode["peak_s"])
    results["peak_gflops"] = {"float32": f32, "bfloat16": bf16,
                              "devices": [d.name for d in tf.config.list_physical_devices()]}  # fmt: skip

    def share(g, peak):
        return f"{100 * g / peak:.1f}%" if peak else "n/a"

    print(f"matmul peak ({mode['peak_n']}x{mode['peak_n']}): float32 {f32:,.0f} GFLOP/s, "
          f"bfloat16 {bf16:,.0f} GFLOP/s" if bf16 else f"matmul peak: float32 {f32:,.0f} GFLOP/s, "
          "bfloat16 not supported")  # fmt: skip
    print(table(
        ["model", "train FLOPs/sample", "kk.train GFLOP/s", "% of f32 peak", "% of bf16 peak",
         "hand GFLOP/s"],
        [[r["model"], f"{r['flops_per_sample'] / 1e6:.2f} M", f"{r['kerakit_gflops']:.1f}",
          share(r["kerakit_gflops"], f32), share(r["kerakit_gflops"], bf16),
          f"{r['hand_gflops']:.1f}"] for r in rows],
    ))  # fmt: skip


def configs(mode: dict, results: dict) -> None:
    print(
        "\n## 1b. Every shipped config at its own batch size (kk.train vs plain fit)\n", flush=True
    )
    rows = []
    for path in sorted((HERE.parent / "configs").glob("*.yaml")):
        try:
            rows.append(train_speed.compare_config(path, epochs=3, rounds=2))
        except Exception as e:  # a config that needs what this machine lacks: say so, go on
            rows.append(
                {"config": path.name, "error": f"skipped: {type(e).__name__}: {e}"[:70] + "..."}
            )
        print(f"  {path.name} done", flush=True)
    results["configs"] = rows
    print(table(
        ["config", "batch", "samples/epoch", "hand samples/s", "kk.train samples/s", "ratio", ""],
        [[r["config"], r.get("batch", ""), r.get("samples", ""),
          f"{r['hand_sps']:,.0f}" if "ratio" in r else r["error"], f"{r['kerakit_sps']:,.0f}"
          if "ratio" in r else "", f"{r['ratio']:.2f}x" if "ratio" in r else "",
          _mark(r["ratio"], 1.0) if "ratio" in r else ""] for r in rows],
    ))  # fmt: skip


def sweep(mode: dict, results: dict) -> None:
    print("\n## 1c. compile.steps_per_execution through kk.train (samples/s)\n", flush=True)
    out, runs = {}, {}
    for kind in ("mlp", "cnn"):
        runs[kind] = {}
        out[kind] = train_speed.sweep_steps_per_execution(
            kind, mode["sweep"], samples=mode[kind], epochs=mode["epochs"],
            rounds=min(mode["rounds"], 3), runs=runs[kind],
        )  # fmt: skip
    results["steps_per_execution"] = {k: {str(s): v for s, v in d.items()} for k, d in out.items()}
    results["steps_per_execution_rounds"] = {
        k: {str(s): [round(v) for v in r] for s, r in d.items()} for k, d in runs.items()
    }
    print(table(
        ["model", *[f"spe={v}" for v in mode["sweep"]]],
        [[k.upper(), *[f"{d[v]:,.0f} ({d[v] / d[mode['sweep'][0]]:.2f}x)" for v in mode["sweep"]]]
         for k, d in out.items()],
    ))  # fmt: skip


def defaults(mode: dict, results: dict) -> None:
    print(
        "\n## 1d. One kk.train default changed at a time (samples/s, vs as shipped)\n", flush=True
    )
    runs: dict = {"mlp": {}, "cnn": {}}
    out = {k: train_speed.variants(k, samples=mode[k], epochs=mode["epochs"],
                                   rounds=min(mode["rounds"], 3), runs=runs[k])
           for k in ("mlp", "cnn")}  # fmt: skip
    results["variants"] = out
    results["variants_rounds"] = {
        k: {n: [round(v) for v in r] for n, r in d.items()} for k, d in runs.items()
    }
    names = list(train_speed.VARIANTS)
    print(table(
        ["variant", "MLP", "CNN"],
        [[n, *[f"{out[k][n]:,.0f} ({out[k][n] / out[k][names[0]]:.2f}x)" for k in ("mlp", "cnn")]]
         for n in names],
    ))  # fmt: skip


def augmentation(mode_name: str, results: dict) -> None:
    print("\n## 3. Augmentation\n", flush=True)
    path = HERE / "augment.py"
    if not path.is_file():
        results["augment"] = "skipped: benchmarks/augment.py does not exist yet"
        print(results["augment"])
        return
    spec = importlib.util.spec_from_file_location("kerakit_bench_augment", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        results["augment"] = module.main([f"--{mode_name}"])
    except SystemExit as e:  # its own argparse may not know our mode flag
        results["augment"] = f"benchmarks/augment.py exited ({e.code}) on --{mode_name}"
        print(results["augment"])
    except Exception as e:
        results["augment"] = f"benchmarks/augment.py failed: {type(e).__name__}: {e}"
        print(results["augment"])


def start_up(mode: dict, results: dict) -> None:
    print("\n## 4. Start-up and whole process (fresh subprocesses, medians)\n", flush=True)
    imp = startup.import_times(mode["imports"], with_keras=mode["imports"] > 1)
    chk = startup.check_time(mode["imports"])
    results["imports"], results["check"] = imp, chk
    tf_s = imp["import tensorflow"]
    rows = [
        ["`python -c pass`", f"{imp['python']:.2f} s", "", ""],
        ["`import tensorflow`", f"{tf_s:.2f} s", "1.00x", ""],
        ["`import kerakit`", f"{imp['import kerakit']:.2f} s",
         f"{imp['import kerakit'] / tf_s:.2f}x", "target <= 1.1x: " + _ok(imp["import kerakit"] <= 1.1 * tf_s)],
    ]  # fmt: skip
    if "import kerakit; kk.compile_model" in imp:
        t = imp["import kerakit; kk.compile_model"]
        rows.append(["`import kerakit` + first Keras name", f"{t:.2f} s", f"{t / tf_s:.2f}x", ""])
    rows.append([f"`kerakit check bad.yaml` (exit {chk['exit']})", f"{chk['seconds']:.2f} s", "",
                 "target < 0.5 s: " + _ok(chk["seconds"] < 0.5)])  # fmt: skip
    if mode["process"]:
        proc = startup.process_times(epochs=3, repeats=mode["process"])
        results["process"] = proc
        k, h = proc["kerakit train"], proc["hand-written script"]
        rows += [
            ["hand-written CNN script (3 epochs, test, save)", f"{h:.1f} s", "1.00x", ""],
            ["`kerakit train overview_cnn.yaml --epochs 3`", f"{k:.1f} s", f"{k / h:.2f}x",
             "target <= 1.0x: " + _ok(k <= h)],
        ]  # fmt: skip
    print(table(["what", "wall time", "ratio", "target"], rows))
    print(f"check's message: {chk['message']}")


def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmarks; prints Markdown tables and returns the results as a dict."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = p.add_mutually_exclusive_group()
    for name in MODES:
        size.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--skip", action="append", default=[], choices=["train", "augment", "startup"])
    args = p.parse_args(argv)
    name = args.mode or "quick"
    mode = MODES[name]
    results: dict = {"mode": name, "machine": machine(),
                     "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])])}  # fmt: skip
    try:
        results["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                                        capture_output=True, text=True).stdout.strip()  # fmt: skip
    except OSError:
        pass
    m = results["machine"]
    print(f"# kerakit benchmarks ({name}): {m['cpu']}, {m['cores']} cores, load {m['load']}, "
          f"{m['date']}")  # fmt: skip
    if name == "smoke":
        print("(smoke: sizes too small for the ratios to mean anything; it checks the harness)")
    start = time.perf_counter()
    if "train" not in args.skip:
        throughput(mode, results)
        if mode["configs"]:
            configs(mode, results)
        if mode["sweep"]:
            sweep(mode, results)
            defaults(mode, results)
    if "augment" not in args.skip:
        augmentation(name, results)
    if "startup" not in args.skip:
        start_up(mode, results)
    results["machine"]["load_after"] = [round(v, 2) for v in os.getloadavg()]
    results["seconds"] = time.perf_counter() - start
    print(
        f"\n(took {results['seconds']:.0f} s; load average after: {results['machine']['load_after']})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
