"""The dynamics layer: run options, steppers and the solver registry, the compiled Rodas4 segments, the driver loop
that decides when a run stops (using the analysis layer's certificate and classification), gradient flow, gradient
descent and SGD, and the result of a run."""
