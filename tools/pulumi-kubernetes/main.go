// pulumi-resource-kubernetes, the pulumi-kubernetes provider plugin, built from its Go module (the module
// proxy serves the v4.25.0 release commit as a pseudo-version). Upstream's main embeds two files its
// `go generate` writes and git ignores, so the module holds only their sources, schema.json and
// terraform-mapping.json: tools/bootstrap.sh puts those two beside this file before building, and this main
// stamps the schema with the plugin's version (what upstream's generate step does) as it starts.
package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"log"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema.json
var schemaSource []byte

//go:embed terraform-mapping.json
var mappingSource []byte

func main() {
	var schema map[string]json.RawMessage
	if err := json.Unmarshal(schemaSource, &schema); err != nil {
		log.Fatalf("the embedded schema is not JSON: %v", err)
	}
	stamped, err := json.Marshal(version.Version)
	if err != nil {
		log.Fatal(err)
	}
	schema["version"] = stamped
	versioned, err := json.Marshal(schema)
	if err != nil {
		log.Fatal(err)
	}
	var mapping bytes.Buffer
	if err = json.Compact(&mapping, mappingSource); err != nil {
		log.Fatalf("the embedded terraform mapping is not JSON: %v", err)
	}
	provider.Serve("kubernetes", version.Version, versioned, mapping.Bytes())
}
