"""The table that every benchmark prints at its end: each column padded to its widest cell."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def print_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    markdown: bool = False,
) -> None:
    """``right``: the indexes of the columns aligned right (numbers); ``markdown``: a Markdown table."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in pairs]
        return f"| {' | '.join(padded)} |" if markdown else "  ".join(padded).rstrip()

    print(line(table[0]))
    if markdown:
        print(f"|{'|'.join('-' * (w + 2) for w in widths)}|")
    for row in table[1:]:
        print(line(row))
