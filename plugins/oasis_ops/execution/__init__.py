"""What runs inside tasks: oasislmf's computation steps, v1 and v2, staging and validation.

Imported by operators only when a task runs; these modules may import oasislmf, pandas and numba.
"""
