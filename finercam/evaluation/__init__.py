"""The data-set runner as a library (see the ``evaluation`` branch for the runner itself)."""
