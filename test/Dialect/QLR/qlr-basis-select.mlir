// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none ratio=0.5" | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none rank=4" | FileCheck %s --check-prefix=RANK
// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none ratio=1" | FileCheck %s --check-prefix=FULL
// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none ratio=0.5 min-rank=3" | FileCheck %s --check-prefix=MIN
// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none rank=2 include=linear1" | FileCheck %s --check-prefix=INCLUDE
// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none rank=2 exclude=linear0,layers.*" | FileCheck %s --check-prefix=EXCLUDE
// RUN: quant-opt %s --split-input-file --qlr-basis-select="score=magnitude refit=none rank=2 classifier=true" | FileCheck %s --check-prefix=CLASSIFIER

// Weights with known spectra (diagonal): %wa flat (16 equal singular values),
// %wb dominated by one (10, then fifteen 1s), %wc the 4x4 identity
// (break-even rank 2). Budget ratio=0.5: 0.5 * (256 + 256 + 16) = 264
// parameters. min-rank=1 costs 32 + 32 + 8; %wc's next step reaches its
// break-even, gains 3/4 of its energy for 8 parameters and makes it dense;
// then every further basis of %wa (1/16 of its energy per 32 parameters)
// beats one of %wb (1/115): 5 more for %wa, nothing fits after that.

// CHECK-LABEL: func.func @spectra
// CHECK-DAG:     %[[A0:.*]] = arith.constant dense_resource<linear0.factor_a> : tensor<16x6xf32>
// CHECK-DAG:     %[[B0:.*]] = arith.constant dense_resource<linear0.factor_b> : tensor<6x16xf32>
// CHECK-DAG:     %[[W0:.*]] = qlr.lowrank %[[A0]], %[[B0]] : tensor<16x6xf32>, tensor<6x16xf32> -> !qlr.lowrank<16x16xf32, rank = 6>
// CHECK-DAG:     %[[A1:.*]] = arith.constant dense_resource<linear1.factor_a> : tensor<16x1xf32>
// CHECK-DAG:     %[[B1:.*]] = arith.constant dense_resource<linear1.factor_b> : tensor<1x16xf32>
// CHECK-DAG:     %[[W1:.*]] = qlr.lowrank %[[A1]], %[[B1]] : tensor<16x1xf32>, tensor<1x16xf32> -> !qlr.lowrank<16x16xf32, rank = 1>
// CHECK-DAG:     %[[W2:.*]] = arith.constant dense<{{.*}}> : tensor<4x4xf32>
// CHECK:         qlr.linear %{{.*}}, %[[W0]] : tensor<?x16xf32>, !qlr.lowrank<16x16xf32, rank = 6> -> tensor<?x16xf32>
// CHECK:         qlr.linear %{{.*}}, %[[W1]] : tensor<?x16xf32>, !qlr.lowrank<16x16xf32, rank = 1> -> tensor<?x16xf32>
// CHECK:         qlr.linear %{{.*}}, %[[W2]] : tensor<?x4xf32>, tensor<4x4xf32> -> tensor<?x4xf32>

// rank=4 keeps 4 bases everywhere, even at or above the break-even.
// RANK-LABEL: func.func @spectra
// RANK-COUNT-2: qlr.linear {{.*}} : tensor<?x16xf32>, !qlr.lowrank<16x16xf32, rank = 4>
// RANK:         qlr.linear {{.*}} : tensor<?x4xf32>, !qlr.lowrank<4x4xf32, rank = 4>

// ratio=1: every layer reaches its break-even and stays dense.
// FULL-LABEL: func.func @spectra
// FULL-NOT:     qlr.lowrank
// FULL:         return

// min-rank=3: %wc starts dense; %wa and %wb start at 3 bases (192 of 264
// parameters with %wc), leaving room for 1 basis of %wa, then none.
// MIN-LABEL: func.func @spectra
// MIN:         qlr.linear {{.*}}, !qlr.lowrank<16x16xf32, rank = 4>
// MIN:         qlr.linear {{.*}}, !qlr.lowrank<16x16xf32, rank = 3>
// MIN:         qlr.linear {{.*}}, tensor<4x4xf32>

// INCLUDE-LABEL: func.func @spectra
// INCLUDE:         qlr.linear {{.*}}, tensor<16x16xf32>
// INCLUDE:         qlr.linear {{.*}}, !qlr.lowrank<16x16xf32, rank = 2>
// INCLUDE:         qlr.linear {{.*}}, tensor<4x4xf32>

// EXCLUDE-LABEL: func.func @spectra
// EXCLUDE:         qlr.linear {{.*}}, tensor<16x16xf32>
// EXCLUDE:         qlr.linear {{.*}}, !qlr.lowrank<16x16xf32, rank = 2>
// EXCLUDE:         qlr.linear {{.*}}, !qlr.lowrank<4x4xf32, rank = 2>
func.func @spectra(%x: tensor<?x16xf32>, %y: tensor<?x4xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x4xf32>) {
  %wa = arith.constant dense<[[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]> : tensor<16x16xf32>
  %wb = arith.constant dense<[[10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]> : tensor<16x16xf32>
  %wc = arith.constant dense<[[1.0, 0.0, 0.0, 0.0],
      [0.0, 1.0, 0.0, 0.0],
      [0.0, 0.0, 1.0, 0.0],
      [0.0, 0.0, 0.0, 1.0]]> : tensor<4x4xf32>
  %a = qlr.linear %x, %wa : tensor<?x16xf32>, tensor<16x16xf32> -> tensor<?x16xf32>
  %b = qlr.linear %x, %wb : tensor<?x16xf32>, tensor<16x16xf32> -> tensor<?x16xf32>
  %c = qlr.linear %y, %wc : tensor<?x4xf32>, tensor<4x4xf32> -> tensor<?x4xf32>
  return %a, %b, %c : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x4xf32>
}

// -----

// Named weights: the classifier (output) stays as it is unless
// classifier=true; f16 weights get f16 factors.
// CHECK-LABEL: func.func @named
// CHECK-DAG:     arith.constant dense_resource<layers.0.attention.wq.factor_a> : tensor<8x2xf32>
// CHECK-DAG:     arith.constant dense_resource<layers.0.attention.wq.factor_b> : tensor<2x8xf32>
// CHECK:         qlr.linear {{.*}}, !qlr.lowrank<8x8xf32, rank = 2>
// CHECK:         qlr.linear {{.*}}, !qlr.lowrank<8x8xf16, rank = 2>
// CHECK:         qlr.linear {{.*}}, tensor<6x8xf32>
// RANK-LABEL: func.func @named
// RANK-DAG:      %[[A:.*]] = arith.constant dense_resource<linear1.factor_a> : tensor<8x4xf16>
// RANK-DAG:      %[[B:.*]] = arith.constant dense_resource<linear1.factor_b> : tensor<4x8xf16>
// RANK:          qlr.lowrank %[[A]], %[[B]] : tensor<8x4xf16>, tensor<4x8xf16> -> !qlr.lowrank<8x8xf16, rank = 4>
// RANK:          qlr.linear {{.*}}, !qlr.lowrank<8x8xf32, rank = 4>
// RANK:          qlr.linear {{.*}}, !qlr.lowrank<8x8xf16, rank = 4>
// RANK:          qlr.linear {{.*}}, tensor<6x8xf32>
// CLASSIFIER-LABEL: func.func @named
// CLASSIFIER:      dense_resource<output.factor_a> : tensor<6x2xf32>
// CLASSIFIER:      qlr.linear {{.*}}, !qlr.lowrank<6x8xf32, rank = 2>
// EXCLUDE-LABEL: func.func @named
// EXCLUDE:         qlr.linear {{.*}}, tensor<8x8xf32>
// EXCLUDE:         qlr.linear {{.*}}, !qlr.lowrank<8x8xf16, rank = 2>
// EXCLUDE:         qlr.linear {{.*}}, tensor<6x8xf32>
func.func @named(%x: tensor<?x8xf32>, %h: tensor<?x8xf16>)
    -> (tensor<?x8xf32>, tensor<?x8xf16>, tensor<?x6xf32>) {
  %wq = arith.constant dense_resource<layers.0.attention.wq> : tensor<8x8xf32>
  %wh = arith.constant dense<[[0.246, 0.484, 0.59, 0.885, 0.48, 0.845, -0.942, -0.069], [0.887, 0.298, 0.802, -0.774, -0.062, -0.507, 0.088, 0.148], [-0.974, -0.567, -0.441, 0.833, 0.531, -0.681, 0.594, -0.722], [0.235, -0.747, -0.996, 0.743, -0.581, -0.569, 0.965, 0.745], [-0.421, 0.923, 0.078, 0.356, -0.59, 0.882, 0.381, 0.933], [0.787, -0.402, -0.278, -0.668, -0.709, -0.87, -0.397, 0.206], [-0.993, 0.356, -0.324, -0.38, 0.637, -0.039, -0.368, -0.038], [0.409, -0.886, 0.95, -0.954, 0.5, 0.69, -0.964, 0.575]]> : tensor<8x8xf16>
  %out = arith.constant dense_resource<output> : tensor<6x8xf32>
  %q = qlr.linear %x, %wq : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %h2 = qlr.linear %h, %wh : tensor<?x8xf16>, tensor<8x8xf16> -> tensor<?x8xf16>
  %l = qlr.linear %x, %out : tensor<?x8xf32>, tensor<6x8xf32> -> tensor<?x6xf32>
  return %q, %h2, %l : tensor<?x8xf32>, tensor<?x8xf16>, tensor<?x6xf32>
}

{-#
  dialect_resources: {
    builtin: {
      layers.0.attention.wq: "0x04000000F00689BE7BCE203E145A7BBF621368BF855E23BF570D693F83611BBFE2EF023FC8FB5B3F9253623F605A9FBE17B194BE795B4A3DD71B0D3F4BAD48BF0F5CFE3E182E183FDB29383FA03E6DBFEC3F643FDF5051BFEA14A3BE8CF9623E860F563FA6E1A3BE6E30593FF4E8B83D030DC0BEC998BBBEA22125BFAAF657BF91C733BFFCB6C13EFA527E3F034C2DBF2C2467BFA030793F8857893DC8BD40BED17B06BF376E403E3510273F8398B5BDB83D20BE587A63BF0B07553F2A3F6FBF6BE352BC9A462D3FB1253DBF7039ED3EFF4B663F6487853EFD75133FB66749BFEE0706BE1D9633BFF680303F8F1CD2BEA2E0BFBD3EA47F3F765A343F44B7733FDA4CBEBD",
      output: "0x04000000C200C2BC5D03EB3E2BAF2BBD2BFED5BE0E0A45BE1EFD34BF08E77BBEF40D7A3FFD6C6B3F1B03823E919DB1BAD365A5BE955C52BF8827E9BECA64103F201A3C3F7F008EBE8D71123F71BF0C3F5F44C73E74F4A73E5EEF043F8BD88BBE7960D13E5268E0BE8688EABC571C0A3FD276C33E7318D3BECF1E643FE648993E8131253E1A127ABF8679C03D854AFFBE2AC3AF3E49CD97BDD623223FB6F9963E6E62183F2AC49BBE4585933E0389F33E5808283FC48D99BEEA8D2F3F02653D3F67DBC03E"
    }
  }
#-}
