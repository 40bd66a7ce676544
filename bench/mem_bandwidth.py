"""This CPU's memory read bandwidth, and the one-stream floor it sets: a decode step reads every weight once, so a
token takes at least (weight bytes ÷ read bandwidth) — issue 26, target 2.

A small C reader (compiled here with the system's gcc, `-O3 -march=native -fopenmp`) XORs a buffer much larger than
the caches, 64 bytes a vector, with 1 and 2 threads; the best of `--reps` passes counts. A second reading pass over a
buffer the size of the model's weights gives the figure that matters for a decode step (it is what llama.cpp and the
engine stream through once per token).

    python bench/mem_bandwidth.py [--gib 1] [--reps 5] [--weights-mb 269] [--tpot llama.cpp=10.5 llmft=14.2]

Writes `bench/results/mem_bandwidth_<date>.json` and prints a Markdown table.
"""
import argparse, datetime, json, os, platform, subprocess, tempfile
from pathlib import Path

C_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
/* usage: reader BYTES REPS THREADS -> prints the best GB/s of REPS read passes over BYTES */
int main(int argc, char **argv) {
    size_t n = strtoull(argv[1], 0, 10) / 8; int reps = atoi(argv[2]), threads = atoi(argv[3]);
    uint64_t *a = aligned_alloc(64, n * 8); memset(a, 1, n * 8);
    omp_set_num_threads(threads);
    double best = 0; volatile uint64_t sink = 0;
    for (int r = 0; r < reps + 1; r++) {
        double t = omp_get_wtime(); uint64_t acc = 0;
        #pragma omp parallel for reduction(^:acc) schedule(static)
        for (size_t i = 0; i < n; i++) acc ^= a[i];
        t = omp_get_wtime() - t; sink ^= acc;
        if (r > 0 && n * 8 / t / 1e9 > best) best = n * 8 / t / 1e9;  /* the first pass pages the buffer in */
    }
    printf("%.2f\n", best); return (int)(sink & 0);
}
"""

def build(folder:Path)->Path:
    src, exe = folder/"reader.c", folder/"reader"
    src.write_text(C_SOURCE)
    subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe)], check=True)
    return exe

def read_gbs(exe:Path, nbytes:int, reps:int, threads:int)->float:
    out = subprocess.run([str(exe), str(nbytes), str(reps), str(threads)], check=True, capture_output=True, text=True)
    return float(out.stdout)

def cpu_model()->str:
    try: return next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
    except (OSError, StopIteration): return platform.processor()

def cpu_family()->str:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    pick = lambda k: next((l.split(":", 1)[1].strip() for l in info if l.startswith(k)), "?")
    return f"family {pick('cpu family')} model {pick('model')}"

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=1.0, help="the large buffer, GiB")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--weights-mb", type=float, default=269.0, help="weight bytes a decode step reads (SmolLM2-135M in bf16: 269 MB)")
    p.add_argument("--tpot", nargs="*", default=[], help="server=ms a token, measured elsewhere, to set against the floor")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        exe = build(Path(d))
        rows = []
        for label, nbytes in [(f"{a.gib:g} GiB", int(a.gib * 2**30)), (f"{a.weights_mb:g} MB (the weights)", int(a.weights_mb * 1e6))]:
            for threads in (1, os.cpu_count() or 1):
                rows.append(dict(buffer=label, bytes=nbytes, threads=threads, gb_s=read_gbs(exe, nbytes, a.reps, threads)))
    best = max(r["gb_s"] for r in rows if "weights" in r["buffer"])
    floor_ms = a.weights_mb / 1e3 / best * 1e3
    servers = [dict(server=s.split("=")[0], ms=float(s.split("=")[1])) for s in a.tpot]
    for s in servers: s["x_floor"] = s["ms"] / floor_ms
    res = dict(date=datetime.date.today().isoformat(), cpu=cpu_model(), cpu_id=cpu_family(), cpus=os.cpu_count(),
               rows=rows, weights_mb=a.weights_mb, floor_ms=floor_ms, servers=servers)
    out = Path(__file__).parent/"results"/f"mem_bandwidth_{res['date']}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"{res['cpu']} ({res['cpu_id']}), {res['cpus']} CPUs\n\n| buffer | threads | read GB/s |\n|---|---|---|")
    for r in rows: print(f"| {r['buffer']} | {r['threads']} | {r['gb_s']:.1f} |")
    print(f"\nfloor: {a.weights_mb:g} MB ÷ {best:.1f} GB/s = {floor_ms:.2f} ms a token")
    for s in servers: print(f"- {s['server']}: {s['ms']:.1f} ms a token = {s['x_floor']:.2f}× the floor")
    print(f"\n{out}")

if __name__ == "__main__": main()
