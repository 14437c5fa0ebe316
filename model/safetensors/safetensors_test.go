package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTripDTypes(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3.14159, 1e-3, -65504, 1e-7, float32(math.Inf(1))}
	for _, dt := range []DType{F32, F16, BF16, F64} {
		dir := t.TempDir()
		p := filepath.Join(dir, "x.safetensors")
		ts := []Tensor{Float32Tensor("b", []int{2, 4}, vals, dt), Float32Tensor("a", []int{8}, vals, F32)}
		if err := Write(p, ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Float32("b")
		if err != nil {
			t.Fatal(err)
		}
		// Re-encoding what was read must give the stored bytes exactly.
		raw, _ := f.Bytes("b")
		again, _ := Encode(got, dt)
		if !bytes.Equal(raw, again) {
			t.Errorf("%s: re-encoded bytes differ", dt)
		}
		if dt == F32 || dt == F64 {
			for i := range vals {
				if got[i] != vals[i] {
					t.Errorf("%s[%d] = %v, want %v", dt, i, got[i], vals[i])
				}
			}
		}
		if f.Metadata()["format"] != "pt" {
			t.Errorf("metadata lost: %v", f.Metadata())
		}
		if names := f.Tensors(); names[0].Name != "a" || names[1].Name != "b" {
			t.Errorf("tensors not sorted: %v", names)
		}
		f.Close()
	}
}

// Every binary16 value converts to float32 and back to the same bits.
func TestF16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToFloat32(uint16(h))
		back := Float32ToF16(f)
		if f != f { // NaN: must stay NaN with the same sign
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != uint16(h)&0x8000 {
				t.Fatalf("NaN %#04x -> %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
}

// Rounding against a float64 reference: the result is the nearest binary16,
// ties to even.
func TestF16Rounding(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1 + 1.0/2048, 0x3c00},           // tie -> even (down)
		{1 + 3.0/2048, 0x3c02},           // tie -> even (up)
		{1 + 1.0/2048 + 1e-7, 0x3c01},    // above tie
		{65520, 0x7c00},                  // rounds to Inf
		{65519, 0x7bff},                  // largest finite
		{5.960464477539063e-08, 0x0001},  // smallest subnormal
		{2.9802322387695312e-08, 0x0000}, // half of it: tie to even = 0
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, c := range cases {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestBF16Rounding(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80},
		{0x3f808000, 0x3f80}, // tie -> even
		{0x3f818000, 0x3f82}, // tie -> even (up)
		{0x3f808001, 0x3f81},
		{0x7f7fffff, 0x7f80}, // rounds to Inf
	}
	for _, c := range cases {
		if got := Float32ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := Float32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("NaN -> %#04x", got)
	}
}

func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestBadFiles(t *testing.T) {
	ok := `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"short", []byte{1, 2, 3}, "truncated file"},
		{"header beyond file", append([]byte{0xff, 0xff, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...), "runs beyond the end"},
		{"bad json", rawFile(`{"w":`, nil), `tensor "w": bad header entry`},
		{"not an object", rawFile(`[1]`, nil), "must be a JSON object"},
		{"duplicate", rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), `tensor "w": duplicate`},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), "overlap"},
		{"unknown dtype", rawFile(`{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), `tensor "w": unknown dtype "Q4"`},
		{"size mismatch", rawFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), `tensor "w": F32[3] needs 12 bytes`},
		{"truncated data", rawFile(ok, make([]byte, 4)), `tensor "w": data_offsets [0, 8] run beyond`},
		{"missing field", rawFile(`{"w":{"dtype":"F32","shape":[2]}}`, make([]byte, 8)), "needs dtype, shape and data_offsets"},
		{"negative dim", rawFile(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, make([]byte, 8)), "negative dimension"},
		{"reversed offsets", rawFile(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8)), "invalid data_offsets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "m.safetensors")
			os.WriteFile(p, c.data, 0o644)
			_, err := Open(p)
			if err == nil {
				t.Fatalf("Open succeeded, want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q: want it to name the file and contain %q", err, c.want)
			}
		})
	}
	if _, err := Parse("ok", rawFile(ok, make([]byte, 8))); err != nil {
		t.Fatalf("valid file rejected: %v", err)
	}
}

func TestSharded(t *testing.T) {
	dir := t.TempDir()
	var ts []Tensor
	for i := 0; i < 10; i++ {
		v := make([]float32, 100)
		for j := range v {
			v[j] = float32(i*1000 + j)
		}
		ts = append(ts, Float32Tensor(string(rune('a'+i)), []int{10, 10}, v, BF16))
	}
	if err := WriteSharded(dir, ts, nil, 450); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); err != nil {
		t.Fatalf("no index: %v", err)
	}
	ck, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if len(ck.files) < 2 {
		t.Fatalf("want several shards, got %d", len(ck.files))
	}
	if len(ck.Tensors()) != 10 {
		t.Fatalf("got %d tensors", len(ck.Tensors()))
	}
	for _, want := range ts {
		raw, err := ck.Bytes(want.Name)
		if err != nil || !bytes.Equal(raw, want.Data) {
			t.Fatalf("tensor %s: %v", want.Name, err)
		}
	}
	// An index naming a missing tensor is an error.
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map":{"zz":"`+filepath.Base(ck.files[0].path)+`"}}`), 0o644)
	if _, err := OpenCheckpoint(dir); err == nil || !strings.Contains(err.Error(), `tensor "zz"`) {
		t.Fatalf("want error naming zz, got %v", err)
	}
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map":{"a":"../x.safetensors"}}`), 0o644)
	if _, err := OpenCheckpoint(dir); err == nil || !strings.Contains(err.Error(), "file name") {
		t.Fatalf("want path error, got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	good, _ := Marshal([]Tensor{Float32Tensor("w", []int{2, 2}, []float32{1, 2, 3, 4}, F16), Float32Tensor("b", []int{1}, []float32{5}, F32)}, map[string]string{"k": "v"})
	f.Add(good)
	f.Add(rawFile(`{}`, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		for _, ti := range sf.Tensors() {
			raw, err := sf.Bytes(ti.Name)
			if err != nil || int64(len(raw)) != ti.NumElements()*int64(ti.DType.Size()) {
				t.Fatalf("tensor %q: inconsistent after validation", ti.Name)
			}
			if ti.DType.IsFloat() {
				if _, err := sf.Float32(ti.Name); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
