//go:build !purego

#include "textflag.h"

// One step p of the 6×16 micro-kernel (see kernelGo): two YMM loads of the
// packed B row p, six broadcasts of the packed A column p, twelve fused
// multiply-adds into the accumulators Y0..Y11 (row r in Y(2r), Y(2r+1)).
#define STEP(ao, bo) \
	VMOVUPS      bo(BX), Y12     \
	VMOVUPS      bo+32(BX), Y13  \
	VBROADCASTSS ao(AX), Y14     \
	VFMADD231PS  Y12, Y14, Y0    \
	VFMADD231PS  Y13, Y14, Y1    \
	VBROADCASTSS ao+4(AX), Y15   \
	VFMADD231PS  Y12, Y15, Y2    \
	VFMADD231PS  Y13, Y15, Y3    \
	VBROADCASTSS ao+8(AX), Y14   \
	VFMADD231PS  Y12, Y14, Y4    \
	VFMADD231PS  Y13, Y14, Y5    \
	VBROADCASTSS ao+12(AX), Y15  \
	VFMADD231PS  Y12, Y15, Y6    \
	VFMADD231PS  Y13, Y15, Y7    \
	VBROADCASTSS ao+16(AX), Y14  \
	VFMADD231PS  Y12, Y14, Y8    \
	VFMADD231PS  Y13, Y14, Y9    \
	VBROADCASTSS ao+20(AX), Y15  \
	VFMADD231PS  Y12, Y15, Y10   \
	VFMADD231PS  Y13, Y15, Y11

// C row = Y(lo), Y(hi) with C not read.
#define STORE(lo, hi) \
	VMOVUPS lo, (DX)     \
	VMOVUPS hi, 32(DX)   \
	ADDQ    SI, DX

// C row = beta*C + Y(lo), Y(hi); beta is broadcast in Y15.
#define UPDATE(lo, hi) \
	VFMADD231PS (DX), Y15, lo    \
	VFMADD231PS 32(DX), Y15, hi  \
	VMOVUPS     lo, (DX)         \
	VMOVUPS     hi, 32(DX)       \
	ADDQ        SI, DX

// func sgemmKernel6x16(kc int, alpha float32, a, b *float32, beta float32, c *float32, ldc int)
TEXT ·sgemmKernel6x16(SB), NOSPLIT, $0-56
	MOVQ kc+0(FP), CX
	MOVQ a+16(FP), AX
	MOVQ b+24(FP), BX
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), SI
	SHLQ $2, SI

	// Warm the six rows of the C tile while the loop runs.
	MOVQ DX, DI
	PREFETCHT0 (DI)
	PREFETCHT0 32(DI)
	ADDQ SI, DI
	PREFETCHT0 (DI)
	PREFETCHT0 32(DI)
	ADDQ SI, DI
	PREFETCHT0 (DI)
	PREFETCHT0 32(DI)
	ADDQ SI, DI
	PREFETCHT0 (DI)
	PREFETCHT0 32(DI)
	ADDQ SI, DI
	PREFETCHT0 (DI)
	PREFETCHT0 32(DI)
	ADDQ SI, DI
	PREFETCHT0 (DI)
	PREFETCHT0 32(DI)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	MOVQ CX, R8
	SHRQ $2, R8
	ANDQ $3, CX
	TESTQ R8, R8
	JZ   tail

loop4:
	PREFETCHT0 384(AX)
	STEP(0, 0)
	STEP(24, 64)
	PREFETCHT0 448(AX)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, AX
	ADDQ $256, BX
	DECQ R8
	JNZ  loop4

tail:
	TESTQ CX, CX
	JZ    scale

loop1:
	STEP(0, 0)
	ADDQ $24, AX
	ADDQ $64, BX
	DECQ CX
	JNZ  loop1

scale:
	VBROADCASTSS alpha+8(FP), Y14
	VMULPS Y14, Y0, Y0
	VMULPS Y14, Y1, Y1
	VMULPS Y14, Y2, Y2
	VMULPS Y14, Y3, Y3
	VMULPS Y14, Y4, Y4
	VMULPS Y14, Y5, Y5
	VMULPS Y14, Y6, Y6
	VMULPS Y14, Y7, Y7
	VMULPS Y14, Y8, Y8
	VMULPS Y14, Y9, Y9
	VMULPS Y14, Y10, Y10
	VMULPS Y14, Y11, Y11

	// beta == ±0 (all bits but the sign clear): store without reading C.
	MOVL beta+32(FP), R9
	SHLL $1, R9
	JNZ  update

	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)
	VZEROUPPER
	RET

update:
	VBROADCASTSS beta+32(FP), Y15
	UPDATE(Y0, Y1)
	UPDATE(Y2, Y3)
	UPDATE(Y4, Y5)
	UPDATE(Y6, Y7)
	UPDATE(Y8, Y9)
	UPDATE(Y10, Y11)
	VZEROUPPER
	RET

// One step of the strided micro-kernel: A element (r, p) is at
// AX + r·R8 for r < 3 and R10 + (r−3)·R8 for r ≥ 3 (R10 = AX + 3·R8),
// B row p at BX; then every pointer moves one step (R9 for A, R11 for B).
#define SSTEP \
	VMOVUPS      (BX), Y12         \
	VMOVUPS      32(BX), Y13       \
	VBROADCASTSS (AX), Y14         \
	VFMADD231PS  Y12, Y14, Y0      \
	VFMADD231PS  Y13, Y14, Y1      \
	VBROADCASTSS (AX)(R8*1), Y15   \
	VFMADD231PS  Y12, Y15, Y2      \
	VFMADD231PS  Y13, Y15, Y3      \
	VBROADCASTSS (AX)(R8*2), Y14   \
	VFMADD231PS  Y12, Y14, Y4      \
	VFMADD231PS  Y13, Y14, Y5      \
	VBROADCASTSS (R10), Y15        \
	VFMADD231PS  Y12, Y15, Y6      \
	VFMADD231PS  Y13, Y15, Y7      \
	VBROADCASTSS (R10)(R8*1), Y14  \
	VFMADD231PS  Y12, Y14, Y8      \
	VFMADD231PS  Y13, Y14, Y9      \
	VBROADCASTSS (R10)(R8*2), Y15  \
	VFMADD231PS  Y12, Y15, Y10     \
	VFMADD231PS  Y13, Y15, Y11     \
	ADDQ         R9, AX            \
	ADDQ         R9, R10           \
	ADDQ         R11, BX

// func sgemmKernel6x16Strided(kc int, alpha float32, a *float32, rsA, csA int, b *float32, csB int, beta float32, c *float32, ldc int)
TEXT ·sgemmKernel6x16Strided(SB), NOSPLIT, $0-80
	MOVQ kc+0(FP), CX
	MOVQ a+16(FP), AX
	MOVQ rsA+24(FP), R8
	SHLQ $2, R8
	MOVQ csA+32(FP), R9
	SHLQ $2, R9
	MOVQ b+40(FP), BX
	MOVQ csB+48(FP), R11
	SHLQ $2, R11
	MOVQ c+64(FP), DX
	MOVQ ldc+72(FP), SI
	SHLQ $2, SI
	LEAQ (AX)(R8*2), R10
	ADDQ R8, R10

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	MOVQ  CX, R12
	SHRQ  $2, R12
	ANDQ  $3, CX
	TESTQ R12, R12
	JZ    stail

sloop4:
	SSTEP
	SSTEP
	SSTEP
	SSTEP
	DECQ R12
	JNZ  sloop4

stail:
	TESTQ CX, CX
	JZ    sscale

sloop1:
	SSTEP
	DECQ CX
	JNZ  sloop1

sscale:
	VBROADCASTSS alpha+8(FP), Y14
	VMULPS Y14, Y0, Y0
	VMULPS Y14, Y1, Y1
	VMULPS Y14, Y2, Y2
	VMULPS Y14, Y3, Y3
	VMULPS Y14, Y4, Y4
	VMULPS Y14, Y5, Y5
	VMULPS Y14, Y6, Y6
	VMULPS Y14, Y7, Y7
	VMULPS Y14, Y8, Y8
	VMULPS Y14, Y9, Y9
	VMULPS Y14, Y10, Y10
	VMULPS Y14, Y11, Y11

	MOVL beta+56(FP), R13
	SHLL $1, R13
	JNZ  supdate

	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)
	VZEROUPPER
	RET

supdate:
	VBROADCASTSS beta+56(FP), Y15
	UPDATE(Y0, Y1)
	UPDATE(Y2, Y3)
	UPDATE(Y4, Y5)
	UPDATE(Y6, Y7)
	UPDATE(Y8, Y9)
	UPDATE(Y10, Y11)
	VZEROUPPER
	RET

// func sdotAVX2(n int, x, y *float32) float32
// Σ x[i]·y[i] with four 8-wide accumulators over blocks of 32, one over
// blocks of 8, then a horizontal sum and a scalar tail.
TEXT ·sdotAVX2(SB), NOSPLIT, $0-28
	MOVQ   n+0(FP), CX
	MOVQ   x+8(FP), SI
	MOVQ   y+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   CX, R8
	SHRQ   $5, R8
	JZ     d8

dloop32:
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	VMOVUPS     32(SI), Y5
	VFMADD231PS 32(DI), Y5, Y1
	VMOVUPS     64(SI), Y6
	VFMADD231PS 64(DI), Y6, Y2
	VMOVUPS     96(SI), Y7
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	DECQ        R8
	JNZ         dloop32

d8:
	MOVQ CX, R8
	ANDQ $31, R8
	SHRQ $3, R8
	JZ   dreduce

dloop8:
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	DECQ        R8
	JNZ         dloop8

dreduce:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	ANDQ         $7, CX
	JZ           ddone

dloop1:
	VMOVSS      (SI), X4
	VFMADD231SS (DI), X4, X0
	ADDQ        $4, SI
	ADDQ        $4, DI
	DECQ        CX
	JNZ         dloop1

ddone:
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET
