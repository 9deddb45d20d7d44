package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// devServerFile, in the data dir, holds the URL and token audience of the last
// `serve --dev` on it, so `clearance token` mints for the server that will
// read the token instead of guessing its port.
const devServerFile = "dev-server.json"

type devServer struct {
	URL      string `json:"url"`
	Audience string `json:"audience"`
}

// writeDevServer records the dev server's URL and audience (atomically: a
// token minted meanwhile reads the old or the new file, never half of one).
func writeDevServer(dataDir string, d devServer) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("dev server file: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, devServerFile+".*")
	if err != nil {
		return fmt.Errorf("dev server file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("dev server file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dev server file: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, devServerFile)); err != nil {
		return fmt.Errorf("dev server file: %w", err)
	}
	return nil
}

// readDevServer returns what the last `serve --dev` on dataDir recorded; ok is
// false when no dev server ever ran there.
func readDevServer(dataDir string) (d devServer, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, devServerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return devServer{}, false, nil
	}
	if err != nil {
		return devServer{}, false, fmt.Errorf("dev server file: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil || d.Audience == "" {
		return devServer{}, false, fmt.Errorf("dev server file %s is damaged; start serve --dev again or pass --audience", filepath.Join(dataDir, devServerFile))
	}
	return d, true, nil
}
