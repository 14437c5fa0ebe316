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

