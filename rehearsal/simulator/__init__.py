"""Local HTTPS stand-in for managed identity, ARM (Storage, Sentinel), Graph and Log Analytics."""

from rehearsal.simulator.server import Simulator, main

__all__ = ["Simulator", "main"]
