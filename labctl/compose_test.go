package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// CI has no Docker engine, so docker-compose.yml is checked by structure:
// the services, a pinned Jaeger, its ports on loopback, and the privileges
// and mounts labctl needs in a container.
func TestComposeFileStructure(t *testing.T) {
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       string            `yaml:"build"`
			Ports       []string          `yaml:"ports"`
			Privileged  bool              `yaml:"privileged"`
			NetworkMode string            `yaml:"network_mode"`
			Pid         string            `yaml:"pid"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			Command     []string          `yaml:"command"`
			DependsOn   []string          `yaml:"depends_on"`
			Restart     string            `yaml:"restart"`
		} `yaml:"services"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	j, ok := f.Services["jaeger"]
	if !ok {
		t.Fatal("no jaeger service")
	}
	if !strings.HasPrefix(j.Image, "jaegertracing/jaeger:2.") {
		t.Errorf("jaeger image %q is not a pinned Jaeger v2", j.Image)
	}
	for _, p := range []string{"127.0.0.1:16686:16686", "127.0.0.1:4317:4317", "127.0.0.1:4318:4318"} {
		if !slices.Contains(j.Ports, p) {
			t.Errorf("jaeger does not publish %s", p)
		}
	}
	l, ok := f.Services["labctl"]
	if !ok {
		t.Fatal("no labctl service")
	}
	if !l.Privileged || l.NetworkMode != "host" || l.Pid != "host" {
		t.Errorf("labctl needs privileged, host network and host pid: %+v", l)
	}
	var mounts []string
	for _, v := range l.Volumes {
		src, _, _ := strings.Cut(v, ":")
		mounts = append(mounts, src)
	}
	for _, m := range []string{"/run/netns", "/run/labctl", "/var/lib/labctl"} {
		if !slices.Contains(mounts, m) {
			t.Errorf("labctl does not mount %s", m)
		}
	}
	if l.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" {
		t.Error("labctl does not point OTLP at jaeger")
	}
	if len(l.Command) == 0 || l.Command[0] != "serve" || !slices.Contains(l.DependsOn, "jaeger") {
		t.Errorf("labctl should serve and depend on jaeger: %v %v", l.Command, l.DependsOn)
	}
	if _, err := os.Stat("../" + l.Build + "/Dockerfile"); l.Build != "" && err != nil {
		t.Errorf("build context %q has no Dockerfile", l.Build)
	}
}
