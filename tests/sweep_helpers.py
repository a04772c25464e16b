"""The tiny sweep file the sweep tests share: a planted 1D problem of 30 samples, two layers of size 2."""

from __future__ import annotations


def tiny_sweep(grid: str, *, noise_std: float | None = None, init_scale: float | None = 0.5) -> str:
    """The sweep file's text (indented by four spaces, for ``textwrap.dedent``): the tiny base config, ``noise_std``
    and ``[init] scale`` when given, and ``grid`` (one TOML line per line) as its ``[grid]``."""
    text = ('    name = "tiny"\n    [architecture]\n    input_size = 12\n    filter_sizes = [2, 2]\n'
            '    [data]\n    source = "planted"\n    num_samples = 30\n')
    if noise_std is not None:
        text += f"    noise_std = {noise_std}\n"
    if init_scale is not None:
        text += f"    [init]\n    scale = {init_scale}\n"
    return text + "    [grid]\n" + "".join(f"    {line.strip()}\n" for line in grid.strip().splitlines())
