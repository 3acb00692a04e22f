"""Studies: a grid of runs (intermediate task x training method x seed), planned with its shared work,
executed on Slurm or locally, and reported with paired-bootstrap confidence intervals.

spec.py (the study config) -> plan.py (units of work and their graph) -> execute.py (Slurm arrays or
one after another here) -> status.py -> examples.py (per-example scores) + bootstrap.py -> report.py.
"""
