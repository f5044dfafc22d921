"""Pure core: parse, classify, plan. No Azure SDK imports, no I/O, the clock is an argument."""
