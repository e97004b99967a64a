package bpf

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall" -target amd64,arm64 -go-package bpf Net c/net.bpf.c -- -I./c
