"""Training runs: one recipe in, a trained model and a complete run folder out.

`run` reads as the algorithm (`train`, `check`, `Run`); `build` makes the
compiled model and checks it against the data; `fit` wires pipelines and
callbacks into `fit` and finishes the run; `transfer` is the two-stage fit of
a transfer model; `callbacks` builds the recipe's callbacks and bundles;
`backups` and `guards` make a run crash-safe (backups, SIGINT/SIGTERM, NaN);
`distribute` and `cluster` are tf.distribute; `runfolder` names every file
of a run folder and finds an interrupted run again.

(The package is `training`, not `train`: `kerakit.train` is the function.)
"""
