package main

import (
	"os"
	"regexp"
)

// envNameRE is what an environment variable named by a *_env key may be called.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// maxAdvertiseAddressLen bounds raft.advertise_address: a DNS name (253 bytes) and a port.
const maxAdvertiseAddressLen = 253 + len(":65535")

// checkAdvertiseAddress validates raft.advertise_address, or fills it from the environment variable
// raft.advertise_address_env names: one config file then serves every pod of a StatefulSet, each
// advertising its own stable DNS name (the pod spec builds the variable from the pod's name).
func checkAdvertiseAddress(path string, addr *string, env string) error {
	key := "raft.advertise_address"
	if env != "" {
		const envKey = "raft.advertise_address_env"
		switch {
		case !envNameRE.MatchString(env):
			return configError(path, envKey, "%q: want an environment variable name (letters, digits and _, not starting with a digit; at most 128)", env)
		case *addr != "":
			return configError(path, envKey, "cannot be set together with raft.advertise_address: give one")
		}
		*addr = os.Getenv(env)
		if *addr == "" {
			return configError(path, envKey, "environment variable %q is empty or not set (in a StatefulSet set it to $(POD_NAME).<headless service>.<namespace>.svc.cluster.local:8300; see examples/kubernetes/)", env)
		}
		key = envKey + " (" + env + ")"
	}
	if *addr == "" {
		return nil
	}
	if len(*addr) > maxAdvertiseAddressLen {
		return configError(path, key, "%.40q…: %d bytes, at most %d (a DNS name and a port)", *addr, len(*addr), maxAdvertiseAddressLen)
	}
	return checkHostPort(path, key, *addr, false)
}
