// RUN: quant-opt %s --qlr-gpu-merge-kernels --verify-diagnostics

// Two GPU modules define different globals of the same name: merging would
// bind one module's kernels to the other's data.
module attributes {gpu.container_module} {
  gpu.module @a {
    memref.global "private" constant @t : memref<2xf32> = dense<[1.0, 2.0]>
    gpu.func @k(%o: memref<2xf32>) kernel {
      gpu.return
    }
  }
  gpu.module @b {
    // expected-error @below {{has the name of a different definition in another GPU module; cannot merge them}}
    memref.global "private" constant @t : memref<2xf32> = dense<[5.0, 6.0]>
    gpu.func @k(%o: memref<2xf32>) kernel {
      gpu.return
    }
  }
}
