module berth.test/nri-plugin

go 1.24.0

require github.com/containerd/nri v0.12.2
