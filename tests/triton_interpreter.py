"""Shims that let flash-linear-attention's Triton kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1).

Why: the kernel tests (marked `kernels`) hold fla's fused path and fla's own layer classes to our PyTorch
references. On a machine without a GPU the interpreter runs the same kernel source on numpy, so the
equivalence in float32 can be checked there too (slowly; compiled-code effects such as TF32 dots, bf16
rounding inside kernels, or autotuned block sizes other than the first are not exercised).

Three gaps of the interpreter (triton 3.9) stop fla 0.6.0's kernels, each closed here and nothing else:
  1. The autotuner benchmarks its configurations through a GPU driver, which the interpreter lacks:
     every configuration is reported as equally fast, so the first one runs.
  2. A loop index `for i in range(n)` stays a Python int, while compiled Triton makes it a tensor, and fla
     calls `i.to(tl.int64)` on it: the loop body now starts with `i = i`, which the interpreter's own
     assignment rewrite turns into a tensor.
  3. libdevice functions are stubs in the interpreter; fla's default ops use two of them, log1p and tanh:
     they get numpy versions.
Installed by tests/conftest.py only under TRITON_INTERPRET=1 with triton importable.
"""

from __future__ import annotations

import ast


def install() -> None:
    import numpy as np
    import triton.language as tl
    import triton.language.extra.libdevice as libdevice
    import triton.runtime.autotuner as autotuner
    import triton.runtime.interpreter as interpreter

    def equally_fast(self, *args, config, **kwargs):
        return [0.0, 0.0, 0.0]

    autotuner.Autotuner._bench = equally_fast

    class LoopIndexAsTensor(interpreter.ASTTransformer):
        def visit_For(self, node):
            node = self.generic_visit(node)
            if isinstance(node.target, ast.Name):
                name = node.target.id
                rebind = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())],
                                    value=ast.Name(id=name, ctx=ast.Load()))
                node.body.insert(0, self.visit_Assign(rebind))
            return node

    interpreter.FunctionRewriter.ast_transformer = LoopIndexAsTensor()

    def elementwise(numpy_function):
        def apply(x):
            handle = interpreter.TensorHandle(numpy_function(x.handle.data), x.handle.dtype.scalar)
            return tl.core.tensor(handle, x.type)
        return apply

    libdevice.log1p = elementwise(np.log1p)
    libdevice.tanh = elementwise(np.tanh)
