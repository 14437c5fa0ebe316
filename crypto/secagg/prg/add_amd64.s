//go:build amd64 && !purego

#include "textflag.h"

// func addLEAsm(dst []uint32, src []byte)
TEXT ·addLEAsm(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI

addLEAsm_loop16:
	CMPQ CX, $16
	JB   addLEAsm_tail
	MOVOU (DI), X0
	MOVOU 16(DI), X1
	MOVOU 32(DI), X2
	MOVOU 48(DI), X3
	MOVOU (SI), X4
	MOVOU 16(SI), X5
	MOVOU 32(SI), X6
	MOVOU 48(SI), X7
	PADDL X4, X0
	PADDL X5, X1
	PADDL X6, X2
	PADDL X7, X3
	MOVOU X0, (DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	ADDQ $64, DI
	ADDQ $64, SI
	SUBQ $16, CX
	JMP  addLEAsm_loop16

addLEAsm_tail:
	TESTQ CX, CX
	JZ    addLEAsm_done
	MOVL  (SI), AX
	ADDL  AX, (DI)
	ADDQ  $4, DI
	ADDQ  $4, SI
	DECQ  CX
	JMP   addLEAsm_tail

addLEAsm_done:
	RET

// func subLEAsm(dst []uint32, src []byte)
TEXT ·subLEAsm(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI

subLEAsm_loop16:
	CMPQ CX, $16
	JB   subLEAsm_tail
	MOVOU (DI), X0
	MOVOU 16(DI), X1
	MOVOU 32(DI), X2
	MOVOU 48(DI), X3
	MOVOU (SI), X4
	MOVOU 16(SI), X5
	MOVOU 32(SI), X6
	MOVOU 48(SI), X7
	PSUBL X4, X0
	PSUBL X5, X1
	PSUBL X6, X2
	PSUBL X7, X3
	MOVOU X0, (DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	ADDQ $64, DI
	ADDQ $64, SI
	SUBQ $16, CX
	JMP  subLEAsm_loop16

subLEAsm_tail:
	TESTQ CX, CX
	JZ    subLEAsm_done
	MOVL  (SI), AX
	SUBL  AX, (DI)
	ADDQ  $4, DI
	ADDQ  $4, SI
	DECQ  CX
	JMP   subLEAsm_tail

subLEAsm_done:
	RET

// func add4LEAsm(dst []uint32, a, b, c, d *byte)
TEXT ·add4LEAsm(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ a+24(FP), SI
	MOVQ b+32(FP), R8
	MOVQ c+40(FP), R9
	MOVQ d+48(FP), R10

add4LEAsm_loop8:
	CMPQ CX, $8
	JB   add4LEAsm_tail
	MOVOU (SI), X0
	MOVOU 16(SI), X1
	MOVOU (R8), X2
	MOVOU 16(R8), X3
	PADDL X2, X0
	PADDL X3, X1
	MOVOU (R9), X4
	MOVOU 16(R9), X5
	MOVOU (R10), X6
	MOVOU 16(R10), X7
	PADDL X6, X4
	PADDL X7, X5
	PADDL X4, X0
	PADDL X5, X1
	MOVOU (DI), X2
	MOVOU 16(DI), X3
	PADDL X0, X2
	PADDL X1, X3
	MOVOU X2, (DI)
	MOVOU X3, 16(DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	SUBQ $8, CX
	JMP  add4LEAsm_loop8

add4LEAsm_tail:
	TESTQ CX, CX
	JZ    add4LEAsm_done
	MOVL  (SI), AX
	ADDL  (R8), AX
	ADDL  (R9), AX
	ADDL  (R10), AX
	ADDL  AX, (DI)
	ADDQ  $4, DI
	ADDQ  $4, SI
	ADDQ  $4, R8
	ADDQ  $4, R9
	ADDQ  $4, R10
	DECQ  CX
	JMP   add4LEAsm_tail

add4LEAsm_done:
	RET

// func sub4LEAsm(dst []uint32, a, b, c, d *byte)
TEXT ·sub4LEAsm(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ a+24(FP), SI
	MOVQ b+32(FP), R8
	MOVQ c+40(FP), R9
	MOVQ d+48(FP), R10

sub4LEAsm_loop8:
	CMPQ CX, $8
	JB   sub4LEAsm_tail
	MOVOU (SI), X0
	MOVOU 16(SI), X1
	MOVOU (R8), X2
	MOVOU 16(R8), X3
	PADDL X2, X0
	PADDL X3, X1
	MOVOU (R9), X4
	MOVOU 16(R9), X5
	MOVOU (R10), X6
	MOVOU 16(R10), X7
	PADDL X6, X4
	PADDL X7, X5
	PADDL X4, X0
	PADDL X5, X1
	MOVOU (DI), X2
	MOVOU 16(DI), X3
	PSUBL X0, X2
	PSUBL X1, X3
	MOVOU X2, (DI)
	MOVOU X3, 16(DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	SUBQ $8, CX
	JMP  sub4LEAsm_loop8

sub4LEAsm_tail:
	TESTQ CX, CX
	JZ    sub4LEAsm_done
	MOVL  (SI), AX
	ADDL  (R8), AX
	ADDL  (R9), AX
	ADDL  (R10), AX
	SUBL  AX, (DI)
	ADDQ  $4, DI
	ADDQ  $4, SI
	ADDQ  $4, R8
	ADDQ  $4, R9
	ADDQ  $4, R10
	DECQ  CX
	JMP   sub4LEAsm_tail

sub4LEAsm_done:
	RET

