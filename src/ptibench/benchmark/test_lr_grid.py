"""The lr-grid benchmark: one case per (stage, lr), each checked against its stored baseline.

The ptibench plugin parametrizes `ptibench_spec` from --lr-grid/--stage/--seeds (ids like
`inversion-lr=5e-03`) and deselects the cases when --lr-grid is not given.
"""


def test_lr_case(ptibench_spec, ptibench):
    result = ptibench.run(ptibench_spec)
    ptibench.check(result)
