"""The report of a run: key findings first, compact layer ranges, and the same report as a self-contained
HTML page that a browser renders with every figure and table."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import replicated, verdict_tables, write_cer

from cka_probe.figures.write import write_figures
from cka_probe.study.cer import cer_gaps, cer_markdown, cer_table
from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.report import key_findings, write_report
from cka_probe.study.report.wording import layer_range
from cka_probe.study.schema import CEILING
from cka_probe.study.summary import decoder_departure, encoder_entanglement, reference_gaps

INTERVAL = re.compile(r"[-+]?\d+\.\d+ \[[-+]?\d+\.\d+, [-+]?\d+\.\d+\]")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder of two languages (one seed, with the ceiling's second SSO and the floor): tables,
    figures, stage timings and its report."""
    run_dir = tmp_path_factory.mktemp("run")
    tables, cer = run_dir / "tables", run_dir / "cer"
    tables.mkdir(), cer.mkdir()
    rng = np.random.default_rng(0)
    results = {
        language: cross_task_arrays(
            replicated(rng, 30, 1), language=language, n_boot=60, n_perm=10, progress=False
        )
        for language in ("en", "ko")
    }
    csvs = [path for language in ("en", "ko") for path in write_cer(cer, repeat=4, language=language)]
    frames = {
        "cross_task": pd.concat([result.table for result in results.values()]),
        "encoder_entanglement": encoder_entanglement(results),
        "decoder_departure": decoder_departure(results),
        "reference_gaps": reference_gaps(results),
        "cer": cer_table(csvs, n_boot=200),
        "cer_gaps": cer_gaps(csvs, n_boot=200),
    }
    for name, frame in frames.items():
        frame.to_csv(tables / f"{name}.csv", index=False)
    (tables / "cer.md").write_text(cer_markdown(frames["cer"]))
    write_figures(tables, run_dir / "figures")
    (run_dir / "stages.csv").write_text("stage,status,seconds\ntables,done,3.2\nfigures,done,1.5\n")
    write_report(run_dir, run_dir / "report.md")
    return run_dir


def section(markdown: str, title: str) -> str:
    """The text of one ``## title`` section of a Markdown report."""
    return markdown.split(f"\n## {title}\n")[1].split("\n## ")[0]


def findings(markdown: str) -> list[str]:
    return [line[2:] for line in section(markdown, "Key findings").splitlines() if line.startswith("- ")]


def test_key_findings_open_the_report_in_at_most_eight_sentences_with_numbers_and_intervals(run):
    text = (run / "report.md").read_text()
    assert (
        text.index("## Key findings")
        < text.index("## Against the paper's findings")
        < text.index("## Appendix: per-layer detail")
    )
    sentences = findings(text)
    assert 4 <= len(sentences) <= 8
    for sentence in sentences:
        assert sentence.endswith(".") and not re.search(r"\.\s+[A-Z]", sentence), sentence  # one sentence
        assert INTERVAL.search(sentence), sentence
    assert sentences[0].startswith("One seed: training variance not measured")
    assert any("multi-task learning helps the meaning task" in s and "in English" in s for s in sentences)
    assert any(s.startswith("The DO encoder sits closer to the surface model") for s in sentences)
    assert any(s.startswith("Against the random-initialisation floor") for s in sentences)


def test_layer_ranges_are_compact_and_never_none(run):
    order = ["encoder.embed", *(f"encoder.layers.{i}" for i in range(5))]
    assert layer_range([], order) == "no layer"
    assert layer_range(order, order) == "every layer"
    assert layer_range(["encoder.layers.3"], order) == "layer 3"
    assert layer_range(["encoder.layers.2", "encoder.layers.3"], order) == "layers 2–3"
    assert layer_range([order[0], order[1], order[2], order[4]], order) == "layers embed, 0–1 and 3"
    for name in ("report.md", "report.html"):
        assert "layers none" not in (run / name).read_text()


def test_findings_of_the_variants_and_the_word_level_join_the_others(run, tmp_path):
    shutil.copytree(run / "tables", tmp_path, dirs_exist_ok=True)
    verdict_tables(tmp_path, (0.2, 0.1, 0.3), (-3, -5, -1), (0.5, -1, 2))
    layers = [f"encoder.layers.{i}" for i in range(3)]
    pd.DataFrame(
        {
            "language": "en",
            "seed": "all",
            "layer": layers,
            "concentration": [-0.01, -0.2, -0.3],
            "ci_low": [-0.1, -0.3, -0.4],
            "ci_high": [0.08, -0.1, -0.2],
            "p_adj": [0.6, 0.01, 0.01],
            "seeds_agree": True,
        }
    ).to_csv(tmp_path / "word_lean.csv", index=False)
    sentences = key_findings(tmp_path)
    assert len(sentences) == 8 and all(INTERVAL.search(s) for s in sentences)
    assert (
        "split-2 **reduced entanglement and closed the surface gap** in English (surface path's lean change "
        "+0.200 [+0.100, +0.300]; surface CER − DO -3.00 [-5.00, -1.00] points)" in sentences[-2]
    )
    assert "differ at layers 1–2 in English (concentration -0.30 [-0.40, -0.20] at layer 2)" in sentences[-1]


def test_findings_say_whether_seeds_were_pooled_and_caution_against_undertrained_models(tmp_path):
    from cka_probe.study.report.findings import cer_findings, seeds_finding

    base = {"language": "en", "part": "encoder", "index_a": 2, "index_b": 2, "ci_low": 0.8, "ci_high": 0.9}
    cross = [{**base, "comparison": "DO-SSO", "seeds": 3}, {**base, "comparison": CEILING, "seeds": 2}]
    pd.DataFrame(cross).assign(value=0.85).to_csv(tmp_path / "cross_task.csv", index=False)
    assert seeds_finding(tmp_path) == (
        "The findings pool 3 seeds per role, so every interval holds the spread between seeds as well as "
        "the sampling of utterances; two SSO models trained from different seeds reach a CKA of "
        "0.85 [0.80, 0.90] in English at the top encoder layer (the seed-to-seed ceiling)."
    )
    row = {"language": "ko", "unit": "char", "so_cer": 40.0, "do_cer": 45.0, "oracle_cer": 12.3}
    tasks = [("surface", 5.0, 2.0, 8.0), ("meaning", 5.0, 2.0, 8.0)]
    pd.DataFrame(
        [{**row, "task": t, "gap": g, "ci_low": lo, "ci_high": hi} for t, g, lo, hi in tasks]
    ).to_csv(tmp_path / "cer.csv", index=False)
    meaning, surface = cer_findings(tmp_path)
    assert "(DO − SO < 0) is **reversed** in Korean (+5.00 [+2.00, +8.00] points; both models err" in meaning
    assert (
        "(DO − SO > 0) holds in Korean" in surface
        and "oracle CER of 12.3 %, so they are undertrained" in surface
    )


class Page(HTMLParser):
    """What the tests read off an HTML page: tags, attributes, and the text of each list item."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.items: list[str] = []
        self.depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "li":
            self.items.append("")
            self.depth += 1

    def handle_endtag(self, tag):
        self.depth -= tag == "li"

    def handle_data(self, data):
        if self.depth:
            self.items[-1] += data

    def count(self, tag: str) -> int:
        return sum(name == tag for name, _ in self.tags)


def markdown_tables(markdown: str) -> int:
    return len(re.findall(r"^\|(?:-{3,}:?\|)+$", markdown, flags=re.MULTILINE))


def test_the_html_report_is_the_markdown_report_self_contained(run):
    markdown, text = (run / "report.md").read_text(), (run / "report.html").read_text()
    page = Page(text)
    figures = sorted((run / "figures").glob("*.png"))
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(figures) == 5 and len(images) == len(figures)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in images}
    assert embedded == {path.read_bytes() for path in figures}
    assert page.count("table") == markdown_tables(markdown) == 3  # verdicts, CER, stages
    appendix = section(markdown, "Appendix: per-layer detail")
    assert page.count("details") == appendix.count("\n### ") == 5  # seeds, gaps, encoders, decoders, stages
    assert page.count("script") == 0
    links = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("src", "href")]
    assert all(link.startswith("data:image/png;base64,") for link in links)
    plain = lambda s: s.replace("**", "").replace("`", "")
    assert [plain(s) for s in findings(markdown)] == page.items[: len(findings(markdown))]
    assert not list(run.glob(".*partial"))


@pytest.mark.slow
def test_a_browser_renders_every_figure_and_table_without_console_errors(run, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (CI installs Debian's chromium package)")
    headless = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    report = (run / "report.html").as_uri()
    shown = subprocess.run([*headless, "--dump-dom", report], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Key findings" in shown.stdout
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    # the report runs no script: a probe page loads it in a frame and counts what the browser drew
    probe = tmp_path / "probe.html"
    probe.write_text(
        f'<iframe src="{report}"></iframe><script>window.onload = () => {{'
        "const doc = document.querySelector('iframe').contentDocument;"
        "const drawn = [...doc.images].filter(i => i.complete && i.naturalWidth > 0).length;"
        "const tables = doc.querySelectorAll('table').length;"
        "document.body.dataset.drawn = `${drawn}/${doc.images.length} ${tables}`;"
        "};</script>"
    )
    counted = subprocess.run(
        [*headless, "--allow-file-access-from-files", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'data-drawn="5/5 3"' in counted.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [*headless, f"--screenshot={shot}", "--window-size=1280,4000", report],
        capture_output=True,
        timeout=120,
    )
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1280) and pixels.std() > 0.05 and (pixels < 0.5).mean() > 0.005
