"""Turn ``benchmarks/README.md`` into reStructuredText for the Performance page.

The benchmark README is the one place its tables and method are written; the
docs include a converted copy made at build time, so the two cannot drift.
Only what that README uses is handled: headings, pipe tables, fenced code,
bullet lists, inline code, bold and links.
"""

import re

_HEADING_CHARACTERS = {1: "=", 2: "-", 3: "~", 4: "^"}


def _inline(text):
    text = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"`\1 <\2>`__", text)
    return text


def _table(rows):
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], [row for row in cells[2:]]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *body]:
        for index, cell in enumerate(row):
            lines.append(f"   {'*' if index == 0 else ' '} - {_inline(cell) or ' '}")
    return [*lines, ""]


def markdown_to_rst(text, heading_offset=0, link_base="", drop_title=True):
    """Convert the README's Markdown; headings move down by ``heading_offset`` levels.

    Relative links are prefixed with ``link_base`` (where the file lives);
    ``drop_title`` leaves out the first-level heading (the page has its own).
    """
    out, lines, index = [], text.splitlines(), 0
    if drop_title and lines and lines[0].startswith("# "):
        lines = lines[1:]
    while index < len(lines):
        line = lines[index]
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if line.startswith("```"):
            block = []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                block.append(lines[index])
                index += 1
            out += ["::", "", *[f"    {row}" if row else "" for row in block], ""]
        elif heading:
            level = min(len(heading.group(1)) + heading_offset, 4)
            title = _inline(heading.group(2))
            out += [title, _HEADING_CHARACTERS[level] * len(title), ""]
        elif line.startswith("|"):
            rows = []
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(lines[index])
                index += 1
            out += _table(rows)
            continue
        elif not line.strip():
            out.append("")
        else:
            # A paragraph or list, converted as one piece: inline code may
            # span lines.
            block = []
            while index < len(lines) and lines[index].strip() and not re.match(
                    r"^(#+\s|\||```)", lines[index]):
                block.append(lines[index])
                index += 1
            converted = _inline("\n".join(block))
            if link_base:
                converted = re.sub(r"<(?!https?:)([^>]+)>`__", rf"<{link_base}\1>`__", converted)
            # RST needs a blank line between a paragraph and a list.
            converted = re.sub(r"^([^-\s].*)\n- ", r"\1\n\n- ", converted, flags=re.M)
            out += [*converted.split("\n"), ""]
            continue
        index += 1
    return "\n".join(out) + "\n"
