"""Citations land on the exact section: every chunk's URL is a page of the real build, its anchor an id there.

The build is the production build of the site (both locales) plus chapters of awkward headings
(`tests/support/site.py`: explicit ids, code, links, emphasis, entities, duplicates, MDX, Urdu), the same
build the deploy-docs tests publish. Chunks come from the ingest's own tasks.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import unicodedata

import pytest
from prefect.logging import disable_run_logger

from app.rag.chunking import Slugger
from app.settings import PROJECT_ROOT
from tasks.pages import built_file
from tasks.textbook import discover_chapters, parse_and_chunk
from tests.support.site import shared_site, site_build

pytestmark = pytest.mark.slow
ID_RE = re.compile(r"\sid=\"([^\"]*)\"")


@pytest.fixture(scope="module")
def build():
    return site_build()


@pytest.fixture(scope="module")
def chunks(build):
    with disable_run_logger():
        files = discover_chapters.fn(shared_site().work_dir / "sources" / build.commit / "website")
        return files, parse_and_chunk.fn(files).chunks


def page_ids(path) -> set[str]:
    return {html.unescape(value) for value in ID_RE.findall(path.read_text(encoding="utf-8"))}


def test_every_chunk_url_is_a_built_page_and_its_anchor_an_id_on_it(build, chunks):
    files, all_chunks = chunks
    problems, anchored = [], 0
    for chunk in all_chunks:
        page = built_file(build.out_dir, chunk.page_url)
        if page is None:
            problems.append(f"{chunk.locale}:{chunk.source_path}: no page for {chunk.page_url}")
            continue
        if chunk.anchor:
            anchored += 1
            if chunk.anchor not in page_ids(page):
                problems.append(f"{chunk.locale}:{chunk.source_path}: #{chunk.anchor} is not an id on {chunk.page_url}")
    assert not problems, "\n".join(problems)
    assert {c.locale for c in all_chunks} == {"en", "ur"}
    assert {(c.locale, c.source_path) for c in all_chunks} == {(f.locale, f.relative_path) for f in files}
    assert anchored > 300, "the textbook's sections are cited by anchor"


def test_awkward_headings_get_the_ids_docusaurus_writes(build, chunks):
    _, all_chunks = chunks
    anchors = {(c.locale, c.source_path): [] for c in all_chunks}
    for chunk in all_chunks:
        if chunk.anchor and chunk.anchor not in anchors[(chunk.locale, chunk.source_path)]:
            anchors[(chunk.locale, chunk.source_path)].append(chunk.anchor)
    assert anchors[("en", "anchor-cases.md")] == [
        "summary", "rclpy-publishers--subscribers", "what-is-vect", "install-first", "the-zero-moment-point",
        "links-and-ros-2-in-headings", "c-and-f", "résumé--and-ⓐ", "the-__init__-method-and-snake_case_names",
        "café--bar", "escaped--star-and-_underscores_", "a-heading-with-a-comment-id-", "summary-1", "summary-2",
        "anchor-cases-1",
    ]
    assert anchors[("en", "anchor-cases-mdx.mdx")] == [
        "mdx-install", "mdx-comment-id", "heading-with-inline-jsx-text", "inside-a-tab", "inside-a-tab-1",
    ]
    assert anchors[("ur", "anchor-cases.md")] == [
        "ros-2-گراف-کیا-ہے", "خلاصہ", "zmp-زیرو-مومنٹ-پوائنٹ-اور-۲-پاؤں", "نیمفاصلہ-والی-سرخی", "خلاصہ-1", "urdu-install",
    ]


def test_slugs_agree_with_github_slugger_for_every_character():
    """The Python slugger against the github-slugger Docusaurus runs, for every assigned code point."""
    slugger = PROJECT_ROOT / "website" / "node_modules" / "github-slugger"
    text = [chr(c) for c in range(0x20, 0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    node = subprocess.run(
        ["node", "-e", f"const s = require({json.dumps(str(slugger))}); const t = JSON.parse(require('fs').readFileSync(0));"
                       "process.stdout.write(JSON.stringify(t.map(x => s.slug('a' + x + 'b'))))"],
        input=json.dumps(text), capture_output=True, text=True, check=True,
    )
    expected = json.loads(node.stdout)
    different = [(f"U+{ord(ch):04X}", want, Slugger.slug(f"a{ch}b")) for ch, want in zip(text, expected, strict=True)
                 if Slugger.slug(f"a{ch}b") != want]
    assert not different, different[:20]
