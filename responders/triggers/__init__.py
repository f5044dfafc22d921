"""One blueprint per trigger. Each turns func.* objects into plain data and calls one service function.

Nothing heavy is imported here: the pipeline and the SDKs load on the first invocation.
"""
