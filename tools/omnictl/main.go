// Command omnictl is the upstream omnictl CLI, built from siderolabs/omni's client module.
package main

import (
	"os"

	"github.com/siderolabs/omni/client/pkg/omnictl"
	"github.com/siderolabs/omni/client/pkg/version"
)

func main() {
	version.Name = "omnictl"
	version.Tag = "v1.8.0"
	omnictl.RootCmd.Version = version.String()

	if err := omnictl.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
