package keystore

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestVerifyRFC8032 checks Verify against RFC 8032 §7.1 TEST 1 and TEST 2,
// and rejects every single-bit change of the signature.
func TestVerifyRFC8032(t *testing.T) {
	for _, v := range []struct{ pub, msg, sig string }{
		{"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	} {
		pub, msg, sig := ed25519.PublicKey(unhex(v.pub)), unhex(v.msg), unhex(v.sig)
		if err := Verify(pub, msg, sig); err != nil {
			t.Fatalf("RFC 8032 vector: %v", err)
		}
		for i := range len(sig) * 8 {
			bad := append([]byte(nil), sig...)
			bad[i/8] ^= 1 << (i % 8)
			if err := Verify(pub, msg, bad); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("bit %d flipped: %v", i, err)
			}
		}
		if err := Verify(pub, msg, sig[:63]); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("short signature: %v", err)
		}
	}
	if err := Verify("not a key", nil, nil); err == nil || errors.Is(err, ErrBadSignature) {
		t.Fatalf("unsupported key type: %v", err)
	}
}
