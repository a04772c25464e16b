"""The model layer: architectures, convolutions (Π, π, the patch operator H), losses, data, the empirical risk and its
derivatives, and the data condition.  It imports only the compiled kernels (:mod:`lcnflow.kernels`)."""
