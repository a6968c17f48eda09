package agentssotc_test

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"

	agentssotc "github.com/agentsso/agentsso/ci/testcontainers"
)

// BenchmarkStartToHealthy measures, once the image exists, the time from
// starting a created container (`agentsso serve`, keys in a fresh SoftHSM2
// token) to Docker's health status "healthy" (the image's HEALTHCHECK, a
// 1 s interval) and to the first 200 from /healthz through the mapped port,
// and reports the image's size. The README's figures come from
//
//	go test -run '^$' -bench StartToHealthy -benchtime 10x ./ci/testcontainers/
func BenchmarkStartToHealthy(b *testing.B) {
	img := image(b)
	ctx := context.Background()
	var toHealthy, toHealthz []float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ctr, err := testcontainers.Run(ctx, img,
			testcontainers.WithExposedPorts(agentssotc.PublicPort),
			testcontainers.WithEnv(map[string]string{"AGENTSSO_ADMIN_TOKEN": "bench"}),
			testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
				hc.PortBindings = network.PortMap{network.MustParsePort(agentssotc.PublicPort): {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
			}),
			testcontainers.WithNoStart())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := ctr.Start(ctx); err != nil {
			b.Fatal(err)
		}
		port, err := ctr.MappedPort(ctx, agentssotc.PublicPort)
		if err != nil {
			b.Fatal(err)
		}
		healthz := "http://127.0.0.1:" + port.Port() + "/healthz"
		hc := &http.Client{Timeout: time.Second}
		var up, healthy time.Duration
		for healthy == 0 {
			if time.Since(t0) > 30*time.Second {
				b.Fatal("not healthy within 30 s")
			}
			if up == 0 {
				if resp, err := hc.Get(healthz); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						up = time.Since(t0)
					}
				}
			}
			ins, err := ctr.Inspect(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if h := ins.State.Health; h != nil && h.Status == container.Healthy {
				healthy = time.Since(t0)
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StopTimer()
		toHealthy = append(toHealthy, healthy.Seconds()*1000)
		toHealthz = append(toHealthz, up.Seconds()*1000)
		if err := ctr.Terminate(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(median(toHealthy), "ms-to-healthy")
	b.ReportMetric(median(toHealthz), "ms-to-healthz")
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ins, err := p.Client().ImageInspect(ctx, img)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ins.Size)/1e6, "image-MB")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
