"""QLR from Python: run a model library made by qlr-compile.

    import qlr
    with qlr.Model("model.so") as m:
        logits = m.forward(m.tokenize("Once upon a time"))  # [n, vocab] float32
        print(m.generate("Once upon a time", 32))
        print(m.perplexity(open("text.txt").read(), ctx=256)["ppl"])

The package loads the library through its C interface
(include/qlr-c/Runtime.h) with ctypes; it needs numpy, not LLVM or MLIR.

The compiler itself (parse, pass pipelines, import, JIT, quantizers) is
`import qlr.compiler`, from the qlr._compiler extension that the build makes
(`ninja -C build qlr-python`); `import qlr` does not need it.
"""

from .runtime import ABI_VERSION, Error, Model, ModelInfo

__all__ = ["ABI_VERSION", "Error", "Model", "ModelInfo"]
__version__ = "0.1.0"
