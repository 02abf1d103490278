"""``python -m nodewright.sim``: the simulator without the rest of the product's CLI."""

import typer

from nodewright.sim.cli import sim_command

if __name__ == "__main__":
    typer.run(sim_command)
