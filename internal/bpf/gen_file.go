package bpf

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package bpf -type file_rec -type pending File c/file.bpf.c -- -I./c
