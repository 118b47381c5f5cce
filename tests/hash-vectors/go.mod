// Prints the version-hash test vectors used by host/tests (see main.go). Never published.
module kfp-operator/tests/hash-vectors

go 1.26.0

require github.com/distribution/reference v0.6.0

require github.com/opencontainers/go-digest v1.0.0 // indirect
