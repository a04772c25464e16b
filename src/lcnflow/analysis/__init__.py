"""The analysis layer: what a point of parameter space is — the certificate (gradient scale, Newton polishing,
Łojasiewicz fit), the classification of critical points, the best point of the function space, the rescaling
symmetry and invariants, the convergence theorem's hypotheses, and the itinerary of a recorded trajectory.  It
imports only the model and the kernels."""
