"""`xrobust bench <area>`: the benchmarks behind docs/BENCHMARKS.md, one module per area
(training, evaluation, kernels, adversarial, gpu), each exposing add_arguments(parser) and run(args).
"""
