package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// removeSandboxes stops and removes every pod sandbox through the CRI, the
// way the kubelet would: containers are killed, the CNI plugin deletes each
// pod's veth and IP, and containerd unmounts the network namespaces.
func (e *env) removeSandboxes(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+e.containerdSock(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, fmt.Errorf("connect to containerd's CRI at %s: %w", e.containerdSock(), err)
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pod sandboxes: %w", err)
	}
	var firstErr error
	for _, sb := range list.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("stop pod sandbox %s (%s/%s): %w", sb.Id, sb.GetMetadata().GetNamespace(), sb.GetMetadata().GetName(), err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("remove pod sandbox %s (%s/%s): %w", sb.Id, sb.GetMetadata().GetNamespace(), sb.GetMetadata().GetName(), err)
		}
	}
	return len(list.Items), firstErr
}
