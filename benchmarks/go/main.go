// Command informer-bench is the client-go peer of kinformer's benchmarks: a SharedInformer
// on pods against the same replay server, reporting one JSON line.
//
//	informer-bench -url URL -mode watch -events N   # events/s into the cache after sync
//	informer-bench -url URL -mode sync              # time, peak RSS and bytes/object to sync
//	informer-bench -url URL -mode relist            # peak RSS during a forced relist (410)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func currentRSS() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func peakRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024
}

func main() {
	url := flag.String("url", "", "replay server URL")
	mode := flag.String("mode", "watch", "watch | sync | relist")
	events := flag.Int64("events", 0, "MODIFIED events to wait for (watch mode)")
	flag.Parse()

	runtime.GC()
	base := currentRSS()
	cfg := &rest.Config{Host: *url, QPS: 1e6, Burst: 1e6}
	cfg.ContentType = "application/json" // the replay server speaks JSON only, like kinformer
	cfg.AcceptContentTypes = "application/json"
	clientset := kubernetes.NewForConfigOrDie(cfg)
	factory := informers.NewSharedInformerFactory(clientset, 0)
	informer := factory.Core().V1().Pods().Informer()
	var updates atomic.Int64
	done := make(chan struct{})
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, _ interface{}) {
			if updates.Add(1) == *events {
				close(done)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), informer.HasSynced)
	synced := time.Now()
	out := map[string]interface{}{}
	switch *mode {
	case "watch":
		// Release the replay server's gated watch events and start the clock.
		begin := time.Now()
		resp, err := http.Post(*url+"/admin/go", "application/json", nil)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		<-done
		elapsed := time.Since(begin).Seconds()
		out["events"] = updates.Load()
		out["seconds"] = elapsed
		out["events_per_s"] = float64(updates.Load()) / elapsed
	case "sync":
		runtime.GC()
		debug.FreeOSMemory()
		steady := currentRSS()
		objects := len(informer.GetStore().ListKeys())
		out["objects"] = objects
		out["seconds"] = synced.Sub(start).Seconds()
		out["peak_rss"] = peakRSS()
		out["steady_rss"] = steady
		out["bytes_per_object"] = float64(steady-base) / float64(objects)
	case "relist":
		runtime.GC()
		debug.FreeOSMemory()
		steady := currentRSS()
		peak := steady
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r := currentRSS(); r > peak {
					peak = r
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		// Let the watch live past client-go's 1 s "very short watch" rule, as kinformer does.
		time.Sleep(1200 * time.Millisecond)
		watchesBefore := serverStats(*url)["watch"]
		relistStart := time.Now()
		resp, err := http.Post(*url+"/admin/expire", "application/json", nil)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		// The relist is done when the reflector opens its next watch: the re-watch that got
		// the 410 is one new watch request, the watch after the relist is the second.
		for serverStats(*url)["watch"] < watchesBefore+2 {
			time.Sleep(5 * time.Millisecond)
		}
		close(stop)
		<-sampled
		out["objects"] = len(informer.GetStore().ListKeys())
		out["relist_seconds"] = time.Since(relistStart).Seconds()
		out["steady_rss"] = steady
		out["relist_peak_rss"] = peak
		out["peak_over_steady"] = float64(peak) / float64(steady)
	}
	data, _ := json.Marshal(out)
	fmt.Println(string(data))
}

func serverStats(url string) map[string]int {
	stats := map[string]int{}
	r, err := http.Get(url + "/admin/stats")
	if err != nil {
		return stats
	}
	defer r.Body.Close()
	_ = json.NewDecoder(r.Body).Decode(&stats)
	return stats
}
