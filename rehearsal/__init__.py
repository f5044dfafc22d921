"""Rehearsal tools: the simulated tenant and the local stand-ins. Used by tests, the demo and replay on
a laptop; never part of what deploys."""
