// A pre-installed NRI plugin for berth's tests, built on NRI's own Go stub:
// berth launches it from nri.plugin_path with its end of a socket pair as fd
// 3 (NRI_PLUGIN_SOCKET), and it adds an environment variable carrying its
// configuration file's content to every container created.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	said string
}

func (p *plugin) Configure(_ context.Context, config, _, _ string) (api.EventMask, error) {
	p.said = strings.TrimSpace(config)
	return api.ParseEventMask("CreateContainer")
}

func (p *plugin) CreateContainer(_ context.Context, _ *api.PodSandbox, _ *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	adjust := &api.ContainerAdjustment{}
	adjust.AddEnv("NRI_PLUGIN_SAYS", p.said)
	return adjust, nil, nil
}

func main() {
	s, err := stub.New(&plugin{})
	if err == nil {
		err = s.Run(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
