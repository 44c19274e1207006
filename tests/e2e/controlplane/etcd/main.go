// Command etcd is go.etcd.io/etcd/server/v3/etcdmain, built from its module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
