"""The runner: what happens between the command line and the records.

* :mod:`.identity`   a run's id, folder, DONE marker, records file and rank zero (a leaf: every part asks it)
* :mod:`.build`      data, protocol, method and Lightning trainer from a resolved config
* :mod:`.steps`      preflight, train, evaluate-and-record: the steps every run is made of
* :mod:`.run`        ``run_experiment`` (``fsgen-bench run``, each suite cell) and ``evaluate_saved`` (``eval``)
* :mod:`.suite`      suites: a grid of cells, each run by the function the suite is given, resumable
* :mod:`.loggers`    csv / wandb / none loggers and the helpers the steps log through
* :mod:`.callbacks`  training callbacks: atomic checkpoints, a non-finite loss guard, sample figures

Imports point one way: identity <- loggers <- callbacks <- build <- steps <- run; the suite uses identity and
loggers and receives the run function; nothing here imports the CLI. This file imports nothing, so that
importing one module does not load Lightning for the others.
"""
