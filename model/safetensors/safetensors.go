// Package safetensors reads and writes the safetensors tensor format used by
// Hugging Face checkpoints and PEFT adapters.
//
// # Format
//
// A file is an 8-byte little-endian header length N, N bytes of JSON header,
// then the data section. The header maps each tensor name to its dtype, shape
// and [begin, end) byte offsets relative to the data section; an optional
// "__metadata__" object maps strings to strings. Tensors are stored
// row-major, little-endian.
//
// Open validates a file completely before returning it: header bounds, JSON
// syntax, duplicate names, known dtypes, byte sizes that match the shapes,
// offsets inside the data section and tensors that do not overlap. Every
// error names the file and, where there is one, the tensor. Files are
// memory-mapped where the platform allows it, so a multi-gigabyte checkpoint
// costs no copy until a tensor is converted.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"

	"github.com/fedtune/fedtune/internal/atomicfile"
)

// DType is a safetensors element type.
type DType string

// Element types. fedtune computes in float32 and converts F16, BF16 and F64
// on read; integer types can be stored and read as raw bytes.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size returns the size of one element in bytes, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// IsFloat reports whether d converts to float32.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// maxHeader bounds the JSON header: the reference implementation refuses
// headers over 100 MB too.
const maxHeader = 100 << 20

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Offsets are the [begin, end) byte offsets in the data section.
	Offsets [2]int64
	// File is the path of the file that holds the tensor.
	File string
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// File is one open safetensors file.
type File struct {
	path    string
	data    []byte // the whole file (mapped or read)
	start   int64  // offset of the data section
	unmap   func() error
	tensors []TensorInfo
	byName  map[string]int
	meta    map[string]string
}

// Open opens and validates a safetensors file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: truncated file: %d bytes, need at least 8 for the header length", path, size)
	}
	data, unmap, err := mapFile(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sf, err := parse(path, data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, err
	}
	sf.unmap = unmap
	return sf, nil
}

// Parse validates a safetensors file held in memory. The returned File
// refers to data; name is used in error messages.
func Parse(name string, data []byte) (*File, error) { return parse(name, data) }

func parse(path string, data []byte) (*File, error) {
	size := int64(len(data))
	if size < 8 {
		return nil, fmt.Errorf("%s: truncated file: %d bytes, need at least 8 for the header length", path, size)
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > maxHeader {
		return nil, fmt.Errorf("%s: header length %d exceeds the limit of %d bytes", path, n, maxHeader)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%s: header length %d runs beyond the end of the file (%d bytes)", path, n, size)
	}
	hdr := data[8 : 8+n]
	sf := &File{path: path, data: data, start: 8 + int64(n), byName: map[string]int{}}
	if err := sf.parseHeader(hdr); err != nil {
		return nil, err
	}
	if err := sf.checkLayout(); err != nil {
		return nil, err
	}
	return sf, nil
}

type rawInfo struct {
	DType       *DType   `json:"dtype"`
	Shape       *[]int   `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader reads the header object token by token so that duplicate keys,
// which encoding/json would silently merge, are caught.
func (sf *File) parseHeader(hdr []byte) error {
	// Trailing spaces pad the header to alignment in files written by the
	// reference implementation.
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: header is not valid JSON: %v", sf.path, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%s: header must be a JSON object", sf.path)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: header is not valid JSON: %v", sf.path, err)
		}
		name := tok.(string)
		if seen[name] {
			return fmt.Errorf("%s: tensor %q: duplicate name in header", sf.path, name)
		}
		seen[name] = true
		if name == "__metadata__" {
			var meta map[string]string
			if err := dec.Decode(&meta); err != nil {
				return fmt.Errorf("%s: __metadata__ must map strings to strings: %v", sf.path, err)
			}
			sf.meta = meta
			continue
		}
		var ri rawInfo
		if err := dec.Decode(&ri); err != nil {
			return fmt.Errorf("%s: tensor %q: bad header entry: %v", sf.path, name, err)
		}
		if ri.DType == nil || ri.Shape == nil || ri.DataOffsets == nil {
			return fmt.Errorf("%s: tensor %q: header entry needs dtype, shape and data_offsets", sf.path, name)
		}
		ti := TensorInfo{Name: name, DType: *ri.DType, Shape: *ri.Shape, File: sf.path}
		if ti.DType.Size() == 0 {
			return fmt.Errorf("%s: tensor %q: unknown dtype %q", sf.path, name, ti.DType)
		}
		if len(*ri.DataOffsets) != 2 {
			return fmt.Errorf("%s: tensor %q: data_offsets must have 2 elements, has %d", sf.path, name, len(*ri.DataOffsets))
		}
		ti.Offsets = [2]int64{(*ri.DataOffsets)[0], (*ri.DataOffsets)[1]}
		for i, d := range ti.Shape {
			if d < 0 {
				return fmt.Errorf("%s: tensor %q: negative dimension %d at axis %d", sf.path, name, d, i)
			}
		}
		sf.byName[name] = len(sf.tensors)
		sf.tensors = append(sf.tensors, ti)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%s: header is not valid JSON: %v", sf.path, err)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) != 0 {
		return fmt.Errorf("%s: trailing bytes after the header object", sf.path)
	}
	return nil
}

func (sf *File) checkLayout() error {
	dataLen := int64(len(sf.data)) - sf.start
	for _, t := range sf.tensors {
		b, e := t.Offsets[0], t.Offsets[1]
		if b < 0 || e < b {
			return fmt.Errorf("%s: tensor %q: invalid data_offsets [%d, %d]", sf.path, t.Name, b, e)
		}
		if e > dataLen {
			return fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] run beyond the data section (%d bytes; truncated file?)", sf.path, t.Name, b, e, dataLen)
		}
		n := t.NumElements()
		if n > math.MaxInt64/8 || n*int64(t.DType.Size()) != e-b {
			return fmt.Errorf("%s: tensor %q: %s%v needs %d bytes, data_offsets give %d", sf.path, t.Name, t.DType, t.Shape, n*int64(t.DType.Size()), e-b)
		}
	}
	// Overlaps: sort by begin and compare neighbours.
	idx := make([]int, len(sf.tensors))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		ta, tb := sf.tensors[idx[a]], sf.tensors[idx[b]]
		if ta.Offsets[0] != tb.Offsets[0] {
			return ta.Offsets[0] < tb.Offsets[0]
		}
		return ta.Offsets[1] < tb.Offsets[1]
	})
	for i := 1; i < len(idx); i++ {
		p, c := sf.tensors[idx[i-1]], sf.tensors[idx[i]]
		if c.Offsets[0] < p.Offsets[1] && c.Offsets[1] > c.Offsets[0] && p.Offsets[1] > p.Offsets[0] {
			return fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] overlap tensor %q [%d, %d]", sf.path, c.Name, c.Offsets[0], c.Offsets[1], p.Name, p.Offsets[0], p.Offsets[1])
		}
	}
	sort.Slice(sf.tensors, func(a, b int) bool { return sf.tensors[a].Name < sf.tensors[b].Name })
	for i, t := range sf.tensors {
		sf.byName[t.Name] = i
	}
	return nil
}

// Path returns the file's path.
func (sf *File) Path() string { return sf.path }

// Tensors lists the tensors sorted by name.
func (sf *File) Tensors() []TensorInfo { return append([]TensorInfo(nil), sf.tensors...) }

// Info returns the description of the named tensor.
func (sf *File) Info(name string) (TensorInfo, bool) {
	i, ok := sf.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return sf.tensors[i], true
}

// Metadata returns the header's __metadata__ map (nil when absent).
func (sf *File) Metadata() map[string]string { return sf.meta }

// ErrNotFound is returned for a tensor name the file does not hold.
var ErrNotFound = errors.New("tensor not found")

// Bytes returns the raw little-endian bytes of the named tensor. The slice
// aliases the mapped file: it is valid until Close and must not be written.
func (sf *File) Bytes(name string) ([]byte, error) {
	t, ok := sf.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", sf.path, name, ErrNotFound)
	}
	return sf.data[sf.start+t.Offsets[0] : sf.start+t.Offsets[1]], nil
}

// Float32 returns the named tensor converted to a new float32 slice. F32,
// F16, BF16 and F64 tensors convert; other types are an error.
func (sf *File) Float32(name string) ([]float32, error) {
	t, ok := sf.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", sf.path, name, ErrNotFound)
	}
	raw, _ := sf.Bytes(name)
	out := make([]float32, t.NumElements())
	if err := Decode(out, raw, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", sf.path, name, err)
	}
	return out, nil
}

// Close releases the mapping. Slices returned by Bytes become invalid.
func (sf *File) Close() error {
	if sf.unmap != nil {
		u := sf.unmap
		sf.unmap = nil
		return u()
	}
	return nil
}

// Decode converts little-endian elements of type dt in src to dst.
// len(src) must be len(dst)*dt.Size().
func Decode(dst []float32, src []byte, dt DType) error {
	if len(src) != len(dst)*dt.Size() {
		return fmt.Errorf("decode %s: %d bytes for %d elements", dt, len(src), len(dst))
	}
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		DecodeF16(dst, src)
	case BF16:
		DecodeBF16(dst, src)
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	default:
		return fmt.Errorf("dtype %s does not convert to float32", dt)
	}
	return nil
}

// DecodeBF16 converts bfloat16 (the upper 16 bits of a float32) to float32.
func DecodeBF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// DecodeF16 converts IEEE 754 binary16 to float32 exactly.
func DecodeF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// F16ToFloat32 converts one IEEE 754 binary16 value to float32 (exact).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0xff<<23 | man<<13)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: value = man · 2^-24.
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// Float32ToF16 rounds a float32 to the nearest binary16, ties to even;
// overflow gives ±Inf and NaN stays NaN.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal or zero in binary16.
		if e < -10 {
			return sign
		}
		m := man | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is the correct rounding
	}
	return sign | uint16(r)
}

// Float32ToBF16 rounds a float32 to the nearest bfloat16, ties to even.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it a quiet NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Encode converts float32 values to little-endian elements of type dt.
func Encode(vals []float32, dt DType) ([]byte, error) {
	out := make([]byte, len(vals)*dt.Size())
	switch dt {
	case F32:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16(v))
		}
	case BF16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(v))
		}
	case F64:
		for i, v := range vals {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(float64(v)))
		}
	default:
		return nil, fmt.Errorf("cannot encode float32 values as %s", dt)
	}
	return out, nil
}

// Tensor is a tensor to write.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Float32Tensor encodes vals as a tensor of type dt (F32, F16, BF16 or F64,
// rounding to nearest even). It panics if dt is not a float type or the shape
// does not match len(vals): both are programmer errors.
func Float32Tensor(name string, shape []int, vals []float32, dt DType) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(vals) {
		panic(fmt.Sprintf("safetensors: tensor %q: shape %v has %d elements, got %d values", name, shape, n, len(vals)))
	}
	data, err := Encode(vals, dt)
	if err != nil {
		panic("safetensors: " + err.Error())
	}
	return Tensor{Name: name, DType: dt, Shape: append([]int(nil), shape...), Data: data}
}

// Marshal encodes tensors (sorted by name, data aligned to 8 bytes as the
// reference implementation does) with optional metadata.
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	ts := append([]Tensor(nil), tensors...)
	sort.Slice(ts, func(a, b int) bool { return ts[a].Name < ts[b].Name })
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata)
		if err != nil {
			return nil, err
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(m)
		first = false
	}
	var off int64
	for i, t := range ts {
		if i > 0 && ts[i-1].Name == t.Name {
			return nil, fmt.Errorf("tensor %q: duplicate name", t.Name)
		}
		if t.Name == "__metadata__" || t.Name == "" {
			return nil, fmt.Errorf("tensor %q: reserved or empty name", t.Name)
		}
		if t.DType.Size() == 0 {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		if n*int64(t.DType.Size()) != int64(len(t.Data)) {
			return nil, fmt.Errorf("tensor %q: %s%v needs %d bytes, have %d", t.Name, t.DType, t.Shape, n*int64(t.DType.Size()), len(t.Data))
		}
		if !first {
			hdr.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(t.Name)
		hdr.Write(name)
		hdr.WriteString(`:{"dtype":"` + string(t.DType) + `","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.Itoa(d))
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	hdr.WriteByte('}')
	for (8+hdr.Len())%8 != 0 {
		hdr.WriteByte(' ')
	}
	out := make([]byte, 8, 8+hdr.Len()+int(off))
	binary.LittleEndian.PutUint64(out, uint64(hdr.Len()))
	out = append(out, hdr.Bytes()...)
	for _, t := range ts {
		out = append(out, t.Data...)
	}
	return out, nil
}

// Write writes tensors to path atomically: a temporary file in the same
// directory, synced, then renamed over path.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	data, err := Marshal(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o644)
}
