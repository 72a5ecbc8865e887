"""Practical 9: Pipeline Parallelism in PyTorch.

Modules (files marked *task* hold code you write; the others are provided):

* ``model``      provided: the course model, a synthetic batch, the single-device reference step
* ``devices``    provided: which device each pipeline stage runs on
* ``partition``  task: split the model into contiguous stages
* ``microbatch`` task: split a batch into micro-batches and weight their losses
* ``schedules``  task: Option A (naive), Option B (GPipe), Option C (the Part 5 delayed-backward loop)
* ``per_stage``  task: per-stage schedules as data (GPipe and PipeDream 1F1B action lists)
* ``run``        provided: ``python -m <package>.run`` runs and compares the schedules

This file imports nothing on purpose: the autograder imports the provided modules on their own.
"""
