package bpf

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package bpf -type exec_rec -type fork_rec -type exit_rec Process c/process.bpf.c -- -I./c
