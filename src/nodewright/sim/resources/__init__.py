"""The simulator's API resources, one module each, over :mod:`nodewright.sim.store`."""
