package audit

import (
	"encoding/json"
	"time"
)

// The audit.k8s.io/v1 types this package reads: the subset of
// k8s.io/apiserver/pkg/apis/audit/v1 (Event, EventList) that rules and
// alerts need. Unknown fields are ignored, as the API server adds fields
// over time.

// APIVersion is the only audit event version vigil reads. The older
// audit.k8s.io/v1beta1 was removed in Kubernetes 1.22.
const APIVersion = "audit.k8s.io/v1"

// k8sEvent is audit.k8s.io/v1 Event.
type k8sEvent struct {
	Kind                     string            `json:"kind"`
	APIVersion               string            `json:"apiVersion"`
	Level                    string            `json:"level"`
	AuditID                  string            `json:"auditID"`
	Stage                    string            `json:"stage"`
	RequestURI               string            `json:"requestURI"`
	Verb                     string            `json:"verb"`
	User                     userInfo          `json:"user"`
	ImpersonatedUser         *userInfo         `json:"impersonatedUser,omitempty"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *objectReference  `json:"objectRef,omitempty"`
	ResponseStatus           *responseStatus   `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty"`
	RequestReceivedTimestamp time.Time         `json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time         `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations,omitempty"`
}

// k8sEventList is audit.k8s.io/v1 EventList, what the webhook backend posts.
type k8sEventList struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
}

// userInfo is authentication/v1 UserInfo.
type userInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// objectReference is audit/v1 ObjectReference.
type objectReference struct {
	Resource    string `json:"resource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	UID         string `json:"uid,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"`
	APIVersion  string `json:"apiVersion,omitempty"`
	Subresource string `json:"subresource,omitempty"`
}

// responseStatus is the part of metav1.Status the audit event carries.
type responseStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    int    `json:"code,omitempty"`
}

// requestObject is the subset of the objects in requests that rules look
// at: pods and workloads (their pod template), RBAC roles and bindings.
type requestObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec *struct {
		podSpec
		Template *struct {
			Spec *podSpec `json:"spec"`
		} `json:"template"`
		JobTemplate *struct {
			Spec *struct {
				Template *struct {
					Spec *podSpec `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
	RoleRef *struct {
		APIGroup string `json:"apiGroup"`
		Kind     string `json:"kind"`
		Name     string `json:"name"`
	} `json:"roleRef"`
	Subjects []struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"subjects"`
	Rules []struct {
		Verbs     []string `json:"verbs"`
		APIGroups []string `json:"apiGroups"`
		Resources []string `json:"resources"`
	} `json:"rules"`
}

// podSpec is the subset of core/v1 PodSpec rules look at.
type podSpec struct {
	HostPID        bool        `json:"hostPID"`
	HostNetwork    bool        `json:"hostNetwork"`
	HostIPC        bool        `json:"hostIPC"`
	Containers     []container `json:"containers"`
	InitContainers []container `json:"initContainers"`
	EphemeralCtrs  []container `json:"ephemeralContainers"`
	Volumes        []struct {
		HostPath *struct {
			Path string `json:"path"`
		} `json:"hostPath"`
	} `json:"volumes"`
}

type container struct {
	Image           string `json:"image"`
	SecurityContext *struct {
		Privileged   *bool `json:"privileged"`
		Capabilities *struct {
			Add []string `json:"add"`
		} `json:"capabilities"`
	} `json:"securityContext"`
}
