package busypoll

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/labctl/labctl/internal/kernel"
)

// offloadNames are the ethtool -K names this package changes, with the
// feature line ethtool -k prints for each.
var offloadNames = map[string]string{"tso": "tcp-segmentation-offload"}

// offloadState reads an offload of iface with ethtool -k: "on" or "off".
func offloadState(ctx context.Context, iface, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ethtool", "-k", iface).Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", kernel.NotSupported(kernel.Feature{Name: "reading and setting " + name + " on " + iface + " (ethtool is not installed)"}, err)
		}
		return "", fmt.Errorf("ethtool -k %s: %w", iface, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		feature, state, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok && feature == offloadNames[name] {
			// "on", "off", or "off [fixed]" for a device that cannot.
			return strings.Fields(state)[0], nil
		}
	}
	return "", fmt.Errorf("ethtool -k %s: no line for %s", iface, offloadNames[name])
}

// setOffload sets an offload of the role's interface through the settings
// journal, which records the command that puts it back; an offload already
// in the wanted state is left alone and records nothing. A fixed offload
// ("off [fixed]") makes ethtool fail, and the step with it.
func (r *roleRun) setOffload(ctx context.Context, name, want string) error {
	cur, err := offloadState(ctx, r.iface, name)
	if err != nil || cur == want {
		return err
	}
	undo := []string{"ethtool", "-K", r.iface, name, cur}
	if err := r.env.Settings.Run(ctx, undo, "ethtool", "-K", r.iface, name, want); err != nil {
		return fmt.Errorf("interface %s: %w", r.iface, err)
	}
	return nil // the gro_on and tso_on evidence shows what took
}
