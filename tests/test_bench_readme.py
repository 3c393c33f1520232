"""README's benchmark table is generated from bench/results.json and matches it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_block_matches_results_json() -> None:
    """The committed README's marked block is exactly what `python -m bench.readme` makes of the
    committed bench/results.json."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    text = (ROOT / "README.md").read_text()
    assert readme.rewrite(text, results) == text, "README is out of date: run python -m bench.readme"


def test_readme_block_follows_the_results(tmp_path: Path) -> None:
    """A changed result changes the block, `--check` then fails, and a rewrite makes it pass again."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    results["cases"][0]["runs"][-1]["wall_s"] = 12345.6
    data = tmp_path / "results.json"
    data.write_text(json.dumps(results))
    page = tmp_path / "README.md"
    page.write_text((ROOT / "README.md").read_text())
    args = ["--results", str(data), "--readme", str(page)]
    assert readme.main([*args, "--check"]) == 1
    assert readme.main(args) == 0
    assert "12345.6 s" in page.read_text()
    assert readme.main([*args, "--check"]) == 0


def test_readme_without_markers_is_refused() -> None:
    """A README without the block's markers is an error that names them."""
    with pytest.raises(ValueError) as err:
        readme.rewrite("# no block here\n", {})
    assert str(err.value) == "README has no <!-- bench:begin --> … <!-- bench:end --> block"
