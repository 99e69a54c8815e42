// Command omnictl is the upstream omnictl CLI, built from siderolabs/omni's client module.
// The upstream main lives in the omni root module, which the module proxy does not serve
// here; this one does what it does: stamp the version and run the root command.
package main

import (
	"os"

	"github.com/siderolabs/omni/client/pkg/omnictl"
	"github.com/siderolabs/omni/client/pkg/version"
)

func main() {
	version.Name = "omnictl"
	omnictl.RootCmd.Version = version.String()

	if err := omnictl.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
