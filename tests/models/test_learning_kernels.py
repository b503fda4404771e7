"""The learner's compiled kernels (models.learning_kernels): ready before work, and kept
out of the processes that only decide."""

from __future__ import annotations

import subprocess
import sys

from models import learning_kernels


def test_warm_up_leaves_each_kernel_compiled_once() -> None:
    learning_kernels.warm_up()
    assert len(learning_kernels.design_rows.signatures) == 1
    assert len(learning_kernels.laplace_steps.signatures) == 1


def test_the_api_does_not_load_numba() -> None:
    probe = (
        "import sys, engine.api, nba.wiring, models.adaptive, models.blended;"
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
