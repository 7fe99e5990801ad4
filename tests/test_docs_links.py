"""The documentation holds together: every relative link resolves, the README stays a front page.

Checks README.md and every Markdown file under docs/: each relative link (inline, image or
reference definition, outside code) names a file or folder of the repository, and a ``#anchor``
names a heading of the target page by GitHub's slug rules; no page points outside the repository
(``../shared`` is for developers and CI, never for a user); README.md has at most
:data:`README_MAX_LINES` lines. Standard library only (runs under Python 3.6 too).
"""

import os
import re

import pytest

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
#: ``[text](target "title")`` and ``![alt](target)``; the target may be wrapped in <>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_files():
    """README.md and every .md file under docs/, as paths relative to the repository."""
    files = ["README.md"]
    for folder, _, names in os.walk(os.path.join(ROOT, "docs")):
        for name in sorted(names):
            if name.endswith(".md"):
                files.append(os.path.relpath(os.path.join(folder, name), ROOT))
    return sorted(files)


def prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def github_slug(heading):
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, spaces -> -.

    Inline code keeps its text, links keep their text, emphasis markers go; a letter, digit,
    underscore, hyphen or space stays, anything else is dropped.
    """
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch in "-_ " or ch.isalnum())
    return text.replace(" ", "-")


def anchors(path):
    """Every heading anchor of a Markdown file, duplicates numbered as GitHub does (-1, -2...)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    seen = {}
    result = set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        if slug in seen:
            seen[slug] += 1
            result.add("{}-{}".format(slug, seen[slug]))
        else:
            seen[slug] = 0
            result.add(slug)
    return result


def links(path):
    """(line number, target) of every link in a Markdown file, outside code."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for number, line in prose_lines(text):
        line = INLINE_CODE.sub("", line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEF.match(line)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            yield number, target.strip("<>")


def problems_of(doc, root=ROOT):
    """What is wrong with the relative links of one page (a path relative to ``root``)."""
    path = os.path.join(root, doc)
    found = []
    for number, target in links(path):
        where = "{}:{}: link {!r}".format(doc, number, target)
        if not target or SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
            else path
        if os.path.relpath(resolved, root).startswith(os.pardir):
            found.append(where + " points outside the repository; a user's clone has only "
                                 "the repository: copy what the page needs into docs/")
            continue
        if not os.path.exists(resolved):
            found.append(where + ": no such file {}".format(os.path.relpath(resolved, root)))
            continue
        if anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            found.append(where + ": {} has no heading with the anchor #{}".format(
                os.path.relpath(resolved, root), anchor))
    return found


def test_github_slugs_follow_githubs_rules():
    assert github_slug("`cvnet-match`: what is refused and when `--force` applies") == \
        "cvnet-match-what-is-refused-and-when---force-applies"
    assert github_slug("Verified here, and not") == "verified-here-and-not"
    assert github_slug("FP16 on TensorRT 8-10 and on 11") == "fp16-on-tensorrt-8-10-and-on-11"
    assert github_slug("The sidecar (`cvnet.onnx.json`)") == "the-sidecar-cvnetonnxjson"
    assert github_slug("**Bold** and [a link](x.md)") == "bold-and-a-link"


def test_the_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path):
    """The check can fail: a broken link and a wrong anchor in a scratch repository are named."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A page\n\n## Part two\n\n[ok](#part-two) [gone](b.md) [bad](a.md#part-three)\n"
        "```\n[inside a fence](nowhere.md)\n```\n[out](../../shared/x.md) `[code](no.md)`\n",
        encoding="utf-8")
    found = problems_of(os.path.join("docs", "a.md"), root=str(tmp_path))
    assert len(found) == 3, found
    assert "no such file docs/b.md" in found[0]
    assert "#part-three" in found[1]
    assert "outside the repository" in found[2]


@pytest.mark.parametrize("doc", doc_files())
def test_every_relative_link_resolves(doc):
    found = problems_of(doc)
    assert not found, "broken links:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", doc_files())
def test_no_page_needs_anything_outside_the_repository(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as handle:
        lines = [(n, line) for n, line in enumerate(handle.read().splitlines(), 1)
                 if "../shared" in line]
    assert not lines, "{} refers to ../shared, which a clone of the repository lacks:\n{}".format(
        doc, "\n".join("{}: {}".format(n, line) for n, line in lines))


def test_readme_is_a_front_page():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        count = len(handle.read().splitlines())
    assert count <= README_MAX_LINES, (
        "README.md has {} lines; it is a front page of at most {}: move details to a page "
        "under docs/ and link it".format(count, README_MAX_LINES))


def test_every_docs_page_is_in_the_index():
    with open(os.path.join(ROOT, "docs", "README.md"), encoding="utf-8") as handle:
        index = handle.read()
    listed = {target.partition("#")[0] for _, target in links(os.path.join(ROOT, "docs",
                                                                           "README.md"))}
    pages = {name for name in os.listdir(os.path.join(ROOT, "docs"))
             if name.endswith(".md") and name != "README.md"}
    missing = sorted(pages - listed)
    assert index and not missing, "docs/README.md does not list: " + ", ".join(missing)
