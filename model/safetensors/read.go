package safetensors

import (
	"io"
	"os"
)

// readAll is the fallback when a file cannot be mapped.
func readAll(f *os.File, size int64) ([]byte, func() error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}
