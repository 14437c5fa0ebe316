package keystore

import (
	"crypto/sha256"
	"math/big"
)

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func bigOne() *big.Int { return big.NewInt(1) }
