// Command kubectl is k8s.io/kubernetes/cmd/kubectl, built from the k8s.io/kubectl module for
// kinformer's end-to-end tests: a client nobody here wrote, run unmodified against kinformer's
// cache API. The upstream main's auth-plugin import is left out (tests talk to loopback with
// --server and no kubeconfig, so no exec/oidc plugin is ever needed).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
