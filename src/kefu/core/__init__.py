"""The rules of the desk: queue, assignment and conversation lifecycle.

Pure: this package imports only the standard library and itself. It reads no
clock and makes no ids; both are passed in.
"""
