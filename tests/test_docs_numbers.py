"""Every measured number in README and docs comes from a generated block (issue 25).

Generated blocks sit between ``<!-- name:start -->`` and ``<!-- name:end -->`` markers (or are whole
generated pages), and each has a test that keeps it equal to what its JSON regenerates. Prose may
quote a number, but only one that a generated block holds: a quoted number that its block no longer
shows is a stale copy. Numbers with two or more decimals are checked (the measured ones); the few
constants below are not measurements.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- ([\w-]+):(?:start|begin) -->(.*?)<!-- \1:end -->", re.S)
NUMBER = re.compile(r"(?<![\w.])\d+\.\d{2,}(?![\w.])")
#: Whole pages written by a script (each with its own test).
GENERATED_PAGES = ("docs/protocol.md", "docs/demo/results.md")
#: Numbers that are not measurements: a version, a closed form, a model's size from its config.
CONSTANTS = {
    "3.10": "the Python version",
    "0.0025": "softplus(-6), the initial posterior std",
    "6.74": "Llama-2-7B's parameter count in billions (its config)",
}
ARXIV = re.compile(r"\d{4}\.\d{4,5}")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_quoted_number_is_one_a_generated_block_holds():
    generated = "".join(body for p in _pages() for _, body in BLOCK.findall(p.read_text()))
    generated += "".join((ROOT / p).read_text() for p in GENERATED_PAGES)
    stale = []
    for page in _pages():
        if page.relative_to(ROOT).as_posix() in GENERATED_PAGES:
            continue
        prose = BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text())
        for i, line in enumerate(prose.splitlines(), 1):
            for n in NUMBER.findall(line):
                if n not in generated and n not in CONSTANTS and not ARXIV.fullmatch(n):
                    stale.append(f"{page.name}:{i}: {n}")
    assert not stale, "numbers quoted outside any generated block, and in none: " + ", ".join(stale)
