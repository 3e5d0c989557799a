package kernel

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseRelease(t *testing.T) {
	for in, want := range map[string]Version{"6.18.44-fc-v782": {6, 18}, "4.14.0": {4, 14}, "5.6": {5, 6}} {
		if got, err := ParseRelease(in); err != nil || got != want {
			t.Errorf("ParseRelease(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseRelease("linux"); err == nil {
		t.Error("ParseRelease accepted no version")
	}
	if !V(6, 9).AtLeast(V(6, 9)) || !V(7, 0).AtLeast(V(6, 9)) || V(6, 8).AtLeast(V(6, 9)) || V(5, 10).AtLeast(V(6, 0)) {
		t.Error("AtLeast")
	}
}

func TestNotSupported(t *testing.T) {
	errno := errors.New("EINVAL")
	err := fmt.Errorf("epoll 3: %w", NotSupported(Feature{"EPIOCSPARAMS", V(6, 9)}, errno))
	var ns *NotSupportedError
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, errno) || !errors.As(err, &ns) || ns.Feature.Since != V(6, 9) {
		t.Errorf("%v does not carry its feature and errno", err)
	}
	if got := err.Error(); got != "epoll 3: EPIOCSPARAMS (Linux 6.9): not supported here: EINVAL" {
		t.Errorf("text %q", got)
	}
}
