"""Child processes for tests: they never outlive the test run."""

from frontend.loadtest.procs import die_with_parent

__all__ = ["die_with_parent"]
