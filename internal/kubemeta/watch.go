package kubemeta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"
)

// pod is the part of a core/v1 Pod the cache uses; the decoder skips the
// rest (annotations, managed fields, volumes ...) without keeping it.
type pod struct {
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		UID             string            `json:"uid"`
		ResourceVersion string            `json:"resourceVersion"`
		Labels          map[string]string `json:"labels"`
		OwnerReferences []ownerReference  `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		NodeName       string      `json:"nodeName"`
		Containers     []container `json:"containers"`
		InitContainers []container `json:"initContainers"`
	} `json:"spec"`
	Status struct {
		ContainerStatuses          []containerStatus `json:"containerStatuses"`
		InitContainerStatuses      []containerStatus `json:"initContainerStatuses"`
		EphemeralContainerStatuses []containerStatus `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

type ownerReference struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Controller *bool  `json:"controller"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type containerStatus struct {
	Name        string `json:"name"`
	ContainerID string `json:"containerID"`
	Image       string `json:"image"`
	ImageID     string `json:"imageID"`
}

// controller is the owner reference that controls p, or nil.
func (p *pod) controller() *ownerReference {
	for i := range p.Metadata.OwnerReferences {
		if r := &p.Metadata.OwnerReferences[i]; r.Controller != nil && *r.Controller {
			return r
		}
	}
	return nil
}

type podList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []pod `json:"items"`
}

type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

const (
	listPageSize = 500
	listTimeout  = time.Minute
	// A watch asks the server to end it after 5 to 10 minutes (spread, so
	// that the sensors of a cluster do not come back all at once), and
	// gives up itself if the server did not in another 30 s: a connection
	// that died silently must not leave the cache frozen.
	watchMin, watchMax = 5 * time.Minute, 10 * time.Minute
	watchGrace         = 30 * time.Second
	backoffMin         = time.Second
	backoffMax         = 30 * time.Second
)

// Run lists and watches the node's pods until ctx is done: a watch
// resumes from the last resource version it saw; when that version has
// expired (410 Gone) the pods are listed again; errors are logged, counted
// (vigil_sensor_kube_watch_errors_total) and retried with backoff. It logs
// once the first list arrived.
func (c *Cache) Run(ctx context.Context) {
	go func() {
		t := time.NewTicker(c.cfg.Linger / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				c.expire(now)
			}
		}
	}()
	wait := backoffMin
	rv, fromCache := "", true
	for ctx.Err() == nil {
		if rv == "" {
			var err error
			if rv, err = c.list(ctx, fromCache); err != nil {
				c.failed(ctx, "listing this node's pods", err, &wait)
				continue
			}
			wait = backoffMin
		}
		events, err := c.watch(ctx, &rv)
		if ctx.Err() != nil {
			return
		}
		switch {
		case IsGone(err):
			// The watch fell too far behind: only a new list says what
			// changed meanwhile. It must be current (not the API server's
			// cache, which may be just as old).
			c.relists.Inc()
			c.log.Info("the pod watch's resource version expired; listing this node's pods again", "node", c.cfg.Node, "resource_version", rv)
			rv, fromCache = "", false
		case err != nil:
			if events > 0 {
				wait = backoffMin
			}
			c.failed(ctx, "watching this node's pods", err, &wait)
		default:
			wait = backoffMin
		}
	}
}

// failed logs and counts err, then waits *wait (with jitter) and doubles it.
func (c *Cache) failed(ctx context.Context, what string, err error, wait *time.Duration) {
	if ctx.Err() != nil {
		return
	}
	c.watchErr.Inc()
	d := *wait/2 + rand.N(*wait/2+1)
	c.log.Warn(what+" failed; retrying (alerts of new pods may lack pod names until it works)",
		"node", c.cfg.Node, "api", c.cfg.Client.Host(), "retry_in", d.Round(time.Millisecond), "err", err)
	*wait = min(*wait*2, backoffMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (c *Cache) selector() string { return "spec.nodeName=" + c.cfg.Node }

// list reads the node's pods, page by page, replaces the cache's content
// with them and returns the list's resource version. fromCache lets the
// API server answer from its watch cache (resourceVersion=0: cheap for it
// when every node's sensor starts at once).
func (c *Cache) list(ctx context.Context, fromCache bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var pods []pod
	q := url.Values{"fieldSelector": {c.selector()}, "limit": {strconv.Itoa(listPageSize)}}
	if fromCache {
		q.Set("resourceVersion", "0")
	}
	for {
		resp, err := c.cfg.Client.get(ctx, "/api/v1/pods", q)
		if err != nil {
			return "", err
		}
		var l podList
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			return "", fmt.Errorf("decode the pod list: %w", err)
		}
		pods = append(pods, l.Items...)
		if l.Metadata.Continue == "" {
			c.replace(pods)
			return l.Metadata.ResourceVersion, nil
		}
		q.Del("resourceVersion")
		q.Set("continue", l.Metadata.Continue)
	}
}

// replace makes the listed pods the cache's content: pods it held that
// the list lacks were deleted while nobody watched.
func (c *Cache) replace(pods []pod) {
	seen := make(map[string]bool, len(pods))
	for i := range pods {
		c.upsert(&pods[i])
		seen[pods[i].Metadata.UID] = true
	}
	now := time.Now()
	c.mu.Lock()
	for uid := range c.byUID {
		if _, gone := c.gone[uid]; !gone && !seen[uid] {
			c.gone[uid] = now
		}
	}
	first := !c.synced
	c.synced = true
	c.broadcastLocked()
	c.mu.Unlock()
	if first {
		c.log.Info("pod metadata of this node loaded", "node", c.cfg.Node, "pods", len(pods))
	}
}

var errWatchSilent = errors.New("the connection went silent")

// watch follows the node's pods from *rv, updating *rv as events arrive,
// until the server ends the watch (nil), ctx ends or an error. It returns
// how many events it applied.
func (c *Cache) watch(ctx context.Context, rv *string) (int, error) {
	timeout := watchMin + rand.N(watchMax-watchMin)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout+watchGrace, errWatchSilent)
	defer cancel()
	q := url.Values{
		"fieldSelector":       {c.selector()},
		"watch":               {"true"},
		"resourceVersion":     {*rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(timeout.Seconds()))},
	}
	resp, err := c.cfg.Client.get(ctx, "/api/v1/pods", q)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	n := 0
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(context.Cause(ctx), errWatchSilent) {
				return n, fmt.Errorf("the API server did not end the watch %v after its %v timeout: %w", watchGrace, timeout, errWatchSilent)
			}
			return n, fmt.Errorf("read the pod watch: %w", err)
		}
		if ev.Type == "ERROR" {
			var st status
			if err := json.Unmarshal(ev.Object, &st); err != nil {
				return n, fmt.Errorf("decode a watch error: %w", err)
			}
			return n, &APIError{Code: int(st.Code), Reason: st.Reason, Message: st.Message}
		}
		var p pod
		if err := json.Unmarshal(ev.Object, &p); err != nil {
			return n, fmt.Errorf("decode a %s pod event: %w", ev.Type, err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			c.upsert(&p)
		case "DELETED":
			c.remove(&p)
		case "BOOKMARK":
		default:
			return n, fmt.Errorf("unknown watch event type %q", ev.Type)
		}
		if p.Metadata.ResourceVersion != "" {
			*rv = p.Metadata.ResourceVersion
		}
		n++
	}
}
