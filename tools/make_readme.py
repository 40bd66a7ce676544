"Write README.md from nbs/index.ipynb (what `nbdev_readme` does, without needing Quarto)."
import json, re
from pathlib import Path

def cell_text(cell): return "".join(cell["source"])

def render(nb_path: Path) -> str:
    parts = []
    for cell in json.loads(nb_path.read_text())["cells"]:
        text = cell_text(cell)
        if cell["cell_type"] == "markdown": parts.append(text)
        elif not re.search(r"^#\|\s*hide", text, re.M):
            code = "\n".join(l for l in text.splitlines() if not l.startswith("#|")).strip()
            if code: parts.append(f"```python\n{code}\n```")
    body = "\n\n".join(parts)
    body = re.sub(r"\]\((?!https?://|/|#)([^)]+\.(?:png|jpg|svg|gif))\)", r"](nbs/\1)", body)  # images live beside the notebook
    return "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n" + body + "\n"

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    (root/"README.md").write_text(render(root/"nbs"/"index.ipynb"))
