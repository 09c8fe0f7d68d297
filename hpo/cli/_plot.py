"""``hpo plot``: the best trials' curves (the book's ch. 6.5 figure) and the search per parameter.

The drawing is :mod:`hpo._plots`; this module only reads the options and writes the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app
from ._common import DbOption, NameArgument, open_storage
from ._console import err_console

__all__ = ["plot"]


@app.command()
def plot(
    name: NameArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="FILE", help="File to write: PNG, or SVG/PDF by its extension."
        ),
    ] = Path("curves.png"),
    top: Annotated[
        int,
        typer.Option("--top", "-k", metavar="N", help="How many best trials to draw.", min=1, max=100),
    ] = 20,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            help="Also draw each trial's score against each parameter, with every stage's range.",
        ),
    ] = True,
    db: DbOption = None,
) -> None:
    """Draw the top trials' train (dashed) vs validation (solid) curves in the objective's metric,
    as in the book's ch. 6.5 figure, and one panel per searched parameter: each trial's score
    against its value, coloured by stage, under the range each stage sampled.
    """
    from hpo._output import atomic_output, output_format

    fmt = output_format(output)
    # The output is checked (its temporary file created) before the study is read.
    with atomic_output(output) as file:
        from hpo import _plots

        data = _plots.read_plot_data(open_storage(db), name, top)
        _plots.save(_plots.draw(data, search=search), file, fmt)
    err_console().print(f"wrote {output}", markup=False, highlight=False)
