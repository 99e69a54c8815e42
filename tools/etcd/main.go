// etcd binary built from the Go module proxy: same entry point as upstream etcd/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
