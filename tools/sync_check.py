"""`make sync-check`: llmft/, the notebooks and README.md must be exactly what the notebooks export, clean to and generate.

The export runs in a scratch copy (the checkout is left as it is), then the two trees are compared file by file, so a
module that is missing, changed or stale (no notebook exports it any more) fails the check, and so does any step that
exits non-zero. `make export` is what writes the checkout."""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEEP = ("llmft/assets",)  # files in the library that no notebook exports
SKIP = {"__pycache__", ".ipynb_checkpoints"}

def run(cmd: list, cwd: Path):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    if r.returncode: sys.exit(f"sync-check: `{' '.join(map(str, cmd))}` failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")

def files(top: Path) -> set:
    "Paths of the files under `top` (or `top` itself), relative to it; caches left out."
    if top.is_file(): return {Path()}
    return {p.relative_to(top) for p in top.rglob("*") if p.is_file() and not SKIP & set(p.relative_to(top).parts)}

def differences(ours: Path, exported: Path) -> list:
    a, b = files(ours), files(exported)
    out = [f"{ours.relative_to(ROOT) / p}: not exported by any notebook (stale)" for p in sorted(a - b)]
    out += [f"{ours.relative_to(ROOT) / p}: exported but missing here" for p in sorted(b - a)]
    out += [f"{ours.relative_to(ROOT) / p}: differs from the export" for p in sorted(a & b)
            if not filecmp.cmp(ours / p if p.parts else ours, exported / p if p.parts else exported, shallow=False)]
    return out

def main():
    with tempfile.TemporaryDirectory() as d:
        scratch = Path(d)
        for name in ("settings.ini", "README.md"): shutil.copy2(ROOT / name, scratch / name)
        for name in ("nbs", "tools", *KEEP): shutil.copytree(ROOT / name, scratch / name, ignore=shutil.ignore_patterns(*SKIP))
        run([BIN / "nbdev_export"], scratch)
        run([BIN / "nbdev_clean"], scratch)
        run([sys.executable, "tools/make_readme.py"], scratch)
        problems = [d for name in ("llmft", "nbs", "README.md") for d in differences(ROOT / name, scratch / name)]
    if problems:
        print("sync-check: the notebooks are the source; run `make export` and commit notebooks and llmft/ together:")
        print("\n".join(f"  {p}" for p in problems)); sys.exit(1)
    print("sync-check: library, notebooks and README agree")

if __name__ == "__main__": main()
