#!/usr/bin/env python3
"""Independent decryption of testdata/golden-v1.keystore.enc.

Re-implements the key store file format from its description (scrypt,
HKDF-SHA256, XChaCha20-Poly1305 via HChaCha20) with Python's hashlib/hmac and
the `cryptography` package, and prints the public keys and checks the
signature that golden_test.go pins. Run: python3 testdata/golden_check.py
"""
import base64, hashlib, hmac, json, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import load_der_private_key, Encoding, PublicFormat

PASS = b"fedtune golden passphrase"
data = open(sys.argv[1] if len(sys.argv) > 1 else "testdata/golden-v1.keystore.enc", "rb").read()
lines = data.decode().rstrip("\n").split("\n")
body = data[: len(data) - len(lines[-1]) - 1]
assert lines[-1] == "sha256 " + hashlib.sha256(body).hexdigest()
kdf = dict(f.split("=", 1) for f in lines[1].split(" ")[2:])
nonce = base64.b64decode(lines[2].split("nonce=")[1])
check = base64.b64decode(lines[3].split(" ")[1])
header = ("\n".join(lines[:4]) + "\n").encode()
ct = base64.b64decode("".join(lines[5:-1]))

n = 1 << int(kdf["logN"])
master = hashlib.scrypt(PASS, salt=base64.b64decode(kdf["salt"]), n=n, r=int(kdf["r"]), p=int(kdf["p"]), maxmem=2**31 - 1, dklen=32)

def hkdf(ikm, info, length):  # RFC 5869, empty salt
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]

key = hkdf(master, b"fedtune-keystore v1 aead key", 32)
assert hkdf(master, b"fedtune-keystore v1 passphrase check", 16) == check

def hchacha20(k, n16):  # draft-irtf-cfrg-xchacha-03 §2.2
    def rotl(v, c): return ((v << c) & 0xffffffff) | (v >> (32 - c))
    def qr(s, a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 7)
    s = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574] + list(struct.unpack("<8I", k)) + list(struct.unpack("<4I", n16))
    for _ in range(10):
        qr(s, 0, 4, 8, 12); qr(s, 1, 5, 9, 13); qr(s, 2, 6, 10, 14); qr(s, 3, 7, 11, 15)
        qr(s, 0, 5, 10, 15); qr(s, 1, 6, 11, 12); qr(s, 2, 7, 8, 13); qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))

sub = hchacha20(key, nonce[:16])
pt = ChaCha20Poly1305(sub).decrypt(b"\x00" * 4 + nonce[16:], ct, header)
p = json.loads(pt)
for v in p["keys"]["audit-checkpoint"]["versions"]:
    priv = load_der_private_key(base64.b64decode(v["pkcs8"]), None)
    pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    print("version", v["version"], "public", pub.hex())
    last = priv
print("signature(v2, 'golden\\n')", last.sign(b"golden\n").hex())
print("secret", base64.b64decode(p["secrets"]["site-a.enrolment"]["value"]))
