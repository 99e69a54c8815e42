// Command omnictl is the upstream omnictl CLI, built from siderolabs/omni's client module.
// The upstream main lives in the omni root module, which the module proxy does not serve
// here; this one does what it does: stamp the version and the API version, then run the
// root command.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/siderolabs/omni/client/pkg/omnictl"
	"github.com/siderolabs/omni/client/pkg/version"
)

// apiVersion is omni's internal/version.API at the pinned tag, set with -ldflags -X
// (which sets only strings). Upstream's main copies that constant into version.API;
// with it, omnictl refuses an Omni whose API differs instead of warning on every call
// that validation is off.
var apiVersion string

func main() {
	api, err := strconv.ParseUint(apiVersion, 10, 32)
	if err != nil || api == 0 {
		fmt.Fprintf(os.Stderr, "omnictl built without a valid API version (%q): rebuild with tools/bootstrap.sh\n", apiVersion)
		os.Exit(1)
	}

	version.Name = "omnictl"
	version.API = uint32(api)
	omnictl.RootCmd.Version = version.String()

	if err := omnictl.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
