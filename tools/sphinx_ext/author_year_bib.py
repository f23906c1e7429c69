"""Bibliography labels that match the author-year citations in the text.

With ``bibtex_reference_style: author_year`` the text cites "[Caruana, 1997]", but pybtex's
``plain`` style labels the bibliography "[1]", "[2]", ... This extension registers the style
``plain_author_year``: the ``plain`` formatting with labels "Caruana, 1997", "Pang and Lee, 2005",
"Kendall et al., 2018" (with "a", "b", ... appended when two labels would be equal).

Loaded by Jupyter Book through ``sphinx.local_extensions`` in ``_config.yml``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from string import ascii_lowercase

from pybtex.database import Entry, Person
from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person: Person) -> str:
    """'Van Gansbeke' for 'Van Gansbeke, Wouter'; LaTeX such as {\\L} rendered as text."""
    latex = " ".join(person.prelast_names + person.last_names)
    return Text.from_latex(latex).render_as("text")


def author_year(entry: Entry) -> str:
    """The label of one entry: 'Caruana, 1997', 'Pang and Lee, 2005', 'Kendall et al., 2018'."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(person) for person in persons]
    year = entry.fields.get("year", "n.d.")
    if not names:
        who = entry.key
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Author-year labels, made unique by a letter after the year."""

    def format_labels(self, sorted_entries: Iterable[Entry]) -> Iterator[str]:
        labels = [author_year(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] == 1:
                yield label
            else:
                seen[label] += 1
                yield label + ascii_lowercase[seen[label] - 1]


class PlainAuthorYearStyle(PlainStyle):
    """pybtex's ``plain`` style with author-year labels."""

    default_label_style = "author_year"


register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "plain_author_year", PlainAuthorYearStyle)


def setup(app: object) -> dict[str, bool]:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
