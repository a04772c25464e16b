"""A 10-line tour: planted deconvolution problem, gradient flow to a certified, classified limit."""

import numpy as np

import lcnflow as lf

rng = np.random.default_rng(0)
arch = lf.Architecture(64, [3, 3, 3])  # three layers of size-3 filters: k_v = 7
X = rng.standard_normal((500, 64))
target = rng.standard_normal(arch.final_filter_size)
Y = (lf.patch_matrix(arch, X) @ target).reshape(500, -1) + 0.01 * rng.standard_normal((500, arch.output_size))
risk = lf.EmpiricalRisk(arch, lf.get_loss("square"), lf.Dataset(X, Y))
result = lf.gradient_flow(risk, lf.random_init(arch, scale=0.5, seed=1))
print(arch, risk.data_condition, result.summary(), sep="\n\n")
