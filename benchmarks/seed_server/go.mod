module eventctl.dev/benchmarks/seed_server

go 1.19
