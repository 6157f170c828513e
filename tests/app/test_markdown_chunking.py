from dataclasses import replace

import pytest

from app.rag.answering import evidence_units
from app.rag.chunking import Slugger, chunk_document, page_url_for
from app.rag.citations import verify_citations
from app.rag.markdown import MalformedDocument, parse_document, scan_lines

MDX_CHAPTER = b"""---
title: Simulation
description: Worlds and robots.
sidebar_position: 3
---
import Tabs from '@theme/Tabs';
import TabItem from '@theme/TabItem';

Intro paragraph about simulators and why robots are trained in them.

## Launching

<Tabs>
<TabItem value="gz" label="Gazebo">

```bash
gz sim shapes.sdf
```

</TabItem>
</Tabs>

:::tip Use a fixed step
Physics engines are deterministic only with a fixed time step.
:::

{{#include ../listings/ch01/main.rs}}

<!-- a comment nobody should read -->

## Launching

A second section with the same heading gets a de-duplicated anchor.
"""


def chunks_of(raw: bytes, path: str = "simulation.mdx", locale: str = "en"):
    doc = parse_document(raw, fallback_title="fallback")
    return doc, chunk_document(doc, source_path=path, locale=locale, page_url=page_url_for(path, locale=locale))


def test_mdx_imports_and_jsx_are_dropped_but_their_content_stays():
    doc, chunks = chunks_of(MDX_CHAPTER)
    text = "\n".join(c.text for c in chunks)
    assert doc.title == "Simulation" and doc.description == "Worlds and robots."
    assert "import Tabs" not in text and "<Tabs>" not in text and "</TabItem>" not in text
    assert "```bash\ngz sim shapes.sdf\n```" in text


def test_admonitions_are_kept_as_text_and_directives_and_comments_dropped():
    _, chunks = chunks_of(MDX_CHAPTER)
    text = "\n".join(c.text for c in chunks)
    assert "**Tip: Use a fixed step**" in text
    assert "deterministic only with a fixed time step" in text
    assert "{{#include" not in text and "nobody should read" not in text and ":::" not in text


def test_chunks_carry_heading_path_anchor_locale_and_site_url():
    _, chunks = chunks_of(MDX_CHAPTER)
    intro, launching, again = chunks[0], chunks[1], chunks[-1]
    assert intro.anchor == "" and intro.url == "/docs/simulation"
    assert launching.heading_path == ("Launching",) and launching.url == "/docs/simulation#launching"
    assert again.url == "/docs/simulation#launching-1"
    assert {c.locale for c in chunks} == {"en"}
    assert len({c.id for c in chunks}) == len(chunks)


def test_urdu_urls_and_anchors_follow_docusaurus():
    raw = "---\ntitle: تعارف\n---\n\n## ROS 2 گراف کیا ہے؟\n\nمتن یہاں ہے اور کافی طویل ہے۔\n".encode()
    _, chunks = chunks_of(raw, path="ros2-fundamentals.md", locale="ur")
    assert chunks[0].url == "/ur/docs/ros2-fundamentals#ros-2-گراف-کیا-ہے"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [("The Zero Moment Point", "the-zero-moment-point"), ("`rclpy` Publishers & Subscribers", "rclpy-publishers--subscribers"),
     ("Force/Torque Sensors", "forcetorque-sensors"), ("What is `Vec<T>`?", "what-is-vect")],
)
def test_slugs_match_github_slugger(heading, anchor):
    assert Slugger.slug(heading) == anchor


def test_page_urls_drop_number_prefixes_extensions_and_index():
    assert page_url_for("01-intro/02-basics.md", locale="en") == "/docs/intro/basics"
    assert page_url_for("guide/index.mdx", locale="ur") == "/ur/docs/guide"
    assert page_url_for("x.md", locale="en", front_matter_slug="/custom/place") == "/docs/custom/place"


def test_explicit_heading_ids_win():
    _, chunks = chunks_of(b"## Setup {#install}\n\nInstall the things you need first.\n", path="a.md")
    assert chunks[0].anchor == "install" and chunks[0].heading_path == ("Setup",)


def test_code_fences_are_never_cut_at_headings_inside_them():
    raw = b"## Real\n\n```python\n# not a heading\nprint('x')\n```\n"
    _, chunks = chunks_of(raw, path="a.md")
    assert len(chunks) == 1 and "# not a heading" in chunks[0].text


def test_long_sections_are_split_into_bounded_chunks():
    paragraph = "Balance control keeps the centre of mass above the support polygon. " * 12
    raw = ("## Balance\n\n" + "\n\n".join([paragraph] * 6)).encode()
    _, chunks = chunks_of(raw, path="a.md")
    assert len(chunks) >= 4
    assert all(len(c.text) <= 1000 * 1.25 for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)


def test_a_code_fence_longer_than_a_chunk_is_cut_into_whole_fences():
    """Each piece opens and closes its fence: a chunk that started inside one read its code as prose (an answer quoted
    four print() lines as a sentence) and its closing fence as an opening one."""
    code = "\n".join(f"estimate_{i} = predict(state, motion_model)  # step {i}" for i in range(60))
    after = "The update step then corrects it with a measurement."
    raw = f"## Predict\n\nThe prediction step pushes the estimate forward.\n\n```python\n{code}\n```\n\n{after}".encode()
    _, chunks = chunks_of(raw, path="a.md")
    pieces = [c.text for c in chunks if "estimate_" in c.text]
    assert len(pieces) >= 3
    for piece in pieces:
        lines = piece.split("\n")
        code_lines = [n for n, line in enumerate(lines) if line.startswith("estimate_")]
        assert lines.count("```python") == 1 and lines.count("```") == 1, piece[:80]
        assert lines.index("```python") < code_lines[0] and code_lines[-1] < lines.index("```")
    assert all(len(c.text) <= 1000 * 1.25 for c in chunks)
    kinds = {(u.kind, u.text) for c in chunks for u in evidence_units(c.text) if "estimate_" in u.text}
    assert {kind for kind, _ in kinds} == {"code"}
    assert len(kinds) == 60  # every line once, none lost or doubled at the cuts
    assert ("prose", after) in {(u.kind, u.text) for u in evidence_units(chunks[-1].text)}


def test_a_table_longer_than_a_chunk_repeats_its_header_in_every_piece():
    rows = "\n".join(f"| sensor {i} | {100 + i} Hz | mounted on link {i} of the left leg |" for i in range(40))
    raw = f"## Rates\n\n| sensor | rate | where |\n|---|---|---|\n{rows}\n".encode()
    _, chunks = chunks_of(raw, path="a.md")
    assert len(chunks) >= 2
    units = [u.text for c in chunks for u in evidence_units(c.text)]
    assert all(c.text.startswith("| sensor | rate | where |\n|---|---|---|") for c in chunks)
    assert len(units) == 40 and "sensor: sensor 39; rate: 139 Hz; where: mounted on link 39 of the left leg" in units


def test_bad_utf8_is_a_malformed_document():
    with pytest.raises(MalformedDocument, match="not valid UTF-8"):
        parse_document(b"## Title\n\n\xff\xfe broken", fallback_title="x")


@pytest.mark.parametrize(
    "raw", [b"---\ntitle: [unclosed\n---\nbody", b"---\ntitle: x\nno end marker", b"---\n- a\n- b\n---\nbody"]
)
def test_broken_front_matter_is_a_malformed_document(raw):
    with pytest.raises(MalformedDocument, match="front matter"):
        parse_document(raw, fallback_title="x")


def test_content_hash_changes_with_text_and_not_otherwise():
    _, first = chunks_of(b"## A\n\nSome text that stays.\n\n## B\n\nOther text.\n", path="a.md")
    _, same = chunks_of(b"## A\n\nSome text that stays.\n\n## B\n\nOther text.\n", path="a.md")
    _, edited = chunks_of(b"## A\n\nSome text that stays.\n\n## B\n\nOther text, edited.\n", path="a.md")
    assert [c.content_hash for c in first] == [c.content_hash for c in same]
    assert first[0].content_hash == edited[0].content_hash and first[1].content_hash != edited[1].content_hash
    assert first[1].id == edited[1].id


# Expected ids read from the real build (tests/website/test_anchors.py builds the same headings).
@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("What is `Vec<T>`?", "what-is-vect"),
        ("The **Zero** *Moment* Point", "the-zero-moment-point"),
        ("[Links](https://example.org) and [ROS 2](./ros2-fundamentals.md) in headings", "links-and-ros-2-in-headings"),
        ("C# and F# ##", "c-and-f"),
        ("Résumé, ² and Ⓐ", "résumé--and-ⓐ"),
        ("The `__init__` method and snake_case_names", "the-__init__-method-and-snake_case_names"),
        ("Caf&eacute; &amp; bar", "café--bar"),
        (r"Escaped \* star and \_underscores\_", "escaped--star-and-_underscores_"),
        ("A heading with a comment id <!-- #comment-id -->", "a-heading-with-a-comment-id-"),
        ("Heading with <span>inline JSX</span> text", "heading-with-inline-jsx-text"),
        ("ROS 2 گراف کیا ہے؟", "ros-2-گراف-کیا-ہے"),
        ("خلاصہ۔", "خلاصہ"),
        ("ZMP (زیرو مومنٹ پوائنٹ) اور ۲ پاؤں", "zmp-زیرو-مومنٹ-پوائنٹ-اور-۲-پاؤں"),
        ("نیم\u200cفاصلہ والی سرخی", "نیمفاصلہ-والی-سرخی"),
    ],
)
def test_heading_anchors_are_the_ids_docusaurus_writes(heading, anchor):
    _, chunks = chunks_of(f"## {heading}\n\nSome text under the heading.\n".encode(), path="a.md")
    assert chunks[0].anchor == anchor
    assert "<" not in chunks[0].heading or "`" in heading


def test_explicit_ids_in_every_syntax_and_they_do_not_count_as_slugs():
    raw = ("## Setup {#install-first}\n\nText.\n\n## Escaped \\{#mdx-install}\n\nText.\n\n"
           "## A comment id {/* #mdx-comment-id */}\n\nText.\n\n## تنصیب {#urdu-install}\n\nمتن۔\n\n"
           "## Install first\n\nText.\n").encode()
    _, chunks = chunks_of(raw, path="a.mdx")
    assert [c.anchor for c in chunks] == ["install-first", "mdx-install", "mdx-comment-id", "urdu-install",
                                          "install-first"]  # Docusaurus does not dedupe against explicit ids
    assert [c.heading for c in chunks][:4] == ["Setup", "Escaped", "A comment id", "تنصیب"]


def test_duplicate_headings_count_the_page_title_and_every_level():
    raw = (b"# Anchor cases\n\nIntro text.\n\n## Summary\n\nOne.\n\n## Summary\n\nTwo.\n\n### Summary\n\nThree.\n\n"
           b"## Anchor cases\n\nFour.\n")
    _, chunks = chunks_of(raw, path="a.md")
    assert [c.anchor for c in chunks] == ["", "summary", "summary-1", "summary-2", "anchor-cases-1"]


def test_page_urls_follow_front_matter_id_and_category_indexes():
    assert page_url_for("guide/intro.md", locale="en", front_matter_id="start") == "/docs/guide/start"
    assert page_url_for("02-guide/02-guide.md", locale="en") == "/docs/guide"
    assert page_url_for("guide/README.md", locale="ur") == "/ur/docs/guide"


def test_an_anchor_fix_rewrites_the_chunks_it_moves():
    """Chunk ids and hashes include the anchor: an index built with old anchors gets them replaced."""
    from app.rag.index_plan import plan_index_changes
    from app.rag.vector_index import IndexedRecord

    _, fixed = chunks_of(b"## What is `Vec<T>`?\n\nA growable array.\n\n## Other\n\nText.\n", path="a.md")
    stale = replace(fixed[0], anchor="what-is-vec", id="old-id")  # what the previous chunker cut
    records = {c.id: IndexedRecord(content_hash=c.content_hash, source_path=c.source_path, locale=c.locale)
               for c in (stale, fixed[1])}
    plan = plan_index_changes(fixed, records, locales_in_scope={"en"}, protected_files=set(), full_rebuild=False)
    assert plan.deleted == ["old-id"] and plan.added == [fixed[0].id] and plan.unchanged == 1


NESTED_FENCES = b"""---
title: Writing docs
---

## Showing a fence

````md
## Not a heading

```bash
echo inner
```

## Still not a heading
````

## Showing tildes

```text
~~~
# not a heading either
~~~
```

The prose after the fences.
"""


def test_nested_fences_of_both_kinds_close_by_commonmarks_rule():
    body = NESTED_FENCES.decode().split("---\n", 2)[2]
    kinds = {line.text: line.kind for line in scan_lines(body.split("\n"))}
    assert kinds["````md"] == "fence-open" and kinds["````"] == "fence-close"
    assert kinds["## Not a heading"] == kinds["```bash"] == kinds["## Still not a heading"] == "code"
    assert kinds["~~~"] == kinds["# not a heading either"] == "code"
    assert kinds["The prose after the fences."] == "text"
    # a closing run must be as long, of the same character, and carry no info string
    lines = ["````", "```", "~~~~", "```` not-a-close", "`````", "after"]
    assert [line.kind for line in scan_lines(lines)] == ["fence-open", "code", "code", "code", "fence-close", "text"]


def test_headings_inside_nested_fences_get_no_chunk_or_anchor():
    _, chunks = chunks_of(NESTED_FENCES, path="writing-docs.md")
    assert [c.anchor for c in chunks] == ["showing-a-fence", "showing-tildes"]
    shown = chunks[0].text
    assert shown.startswith("````md\n## Not a heading") and shown.endswith("## Still not a heading\n````")
    assert "~~~\n# not a heading either\n~~~" in chunks[1].text
    assert chunks[1].text.endswith("The prose after the fences.")


def test_code_in_nested_fences_is_code_for_answers_and_citations():
    text = ("Docs show fences like this one.\n\n````md\n```\nnot prose, a quoted fence.\n```\n````\n"
            "The prose after the fence ends here.")
    units = [(u.kind, u.text) for u in evidence_units(text)]
    assert units == [("prose", "Docs show fences like this one."), ("code", "`not prose, a quoted fence.`"),
                     ("prose", "The prose after the fence ends here.")]
    answer = "````\n```\nUnsupported words about bread stay quoted.\n```\n````"
    assert verify_citations(answer, ["A source about robots."]).text == answer


def test_content_hash_changes_with_the_sparse_tokenizer_version(monkeypatch):
    """A tokenizer change must rewrite every chunk's sparse vector on the next incremental ingest."""
    from app.rag import chunking

    _, before = chunks_of(b"## A\n\nSome text that stays.\n", path="a.md")
    monkeypatch.setattr(chunking, "SPARSE_TOKENIZER_VERSION", chunking.SPARSE_TOKENIZER_VERSION + 1)
    _, after = chunks_of(b"## A\n\nSome text that stays.\n", path="a.md")
    assert before[0].id == after[0].id and before[0].content_hash != after[0].content_hash
