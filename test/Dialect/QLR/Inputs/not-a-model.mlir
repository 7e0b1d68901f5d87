// A valid module that qlr-import did not make (no qlr.model attribute).
func.func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  return %x : tensor<?x4xf32>
}
