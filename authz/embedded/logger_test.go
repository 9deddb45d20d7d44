package embedded

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestLoggerLevels: OpenFGA's info lines (which can name users and objects) never
// reach info level; warnings and errors keep theirs, with their fields.
func TestLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := zapLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Info("check user:anne ticket:WEB-1")
	l.With(zap.String("store", "s1")).Warn("slow datastore", zap.Int("ms", 900))
	l.Error("datastore down")
	out := buf.String()
	if strings.Contains(out, "anne") {
		t.Errorf("info line logged at info level:\n%s", out)
	}
	for _, want := range []string{"level=WARN msg=\"slow datastore\"", "store=s1", "ms=900", "level=ERROR msg=\"datastore down\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
