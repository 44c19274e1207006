// Command informer-bench is the client-go peer of kinformer's benchmarks: a SharedInformer
// on pods against the same replay server, reporting one JSON line.
//
//	informer-bench -url URL -mode watch -events N   # events/s into the cache after sync
//	informer-bench -url URL -mode sync              # time, peak RSS and bytes/object to sync
//	informer-bench -url URL -mode relist            # peak RSS during a forced relist (410)
//
// -protobuf asks for protobuf (what client-go uses for built-in types against a real API
// server; the replay server serves it when started with -protobuf-encoder); the default is
// JSON, the same bytes kinformer reads. -cpuprofile FILE writes a pprof CPU profile of the
// measured part (the watch events after sync, or the sync itself).
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
	"runtime/pprof"
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

// cpuSeconds is the CPU time (user + system, every thread) this process has used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func main() {
	url := flag.String("url", "", "replay server URL")
	mode := flag.String("mode", "watch", "watch | sync | relist")
	events := flag.Int64("events", 0, "MODIFIED events to wait for (watch mode)")
	useProtobuf := flag.Bool("protobuf", false, "ask for protobuf instead of JSON")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured part here")
	flag.Parse()

	runtime.GC()
	base := currentRSS()
	cfg := &rest.Config{Host: *url, QPS: 1e6, Burst: 1e6}
	if *useProtobuf {
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	} else {
		cfg.ContentType = "application/json" // the bytes kinformer reads
		cfg.AcceptContentTypes = "application/json"
	}
	profile := func() func() {
		if *cpuProfile == "" {
			return func() {}
		}
		f, err := os.Create(*cpuProfile)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		return func() { pprof.StopCPUProfile(); f.Close() }
	}
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
	stopProfile := func() {}
	if *mode == "sync" {
		stopProfile = profile()
	}
	start := time.Now()
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), informer.HasSynced)
	synced := time.Now()
	stopProfile()
	out := map[string]interface{}{}
	switch *mode {
	case "watch":
		// Release the replay server's gated watch events and start the clock.
		stopProfile = profile()
		cpu := cpuSeconds()
		begin := time.Now()
		resp, err := http.Post(*url+"/admin/go", "application/json", nil)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		<-done
		elapsed := time.Since(begin).Seconds()
		cpu = cpuSeconds() - cpu
		stopProfile()
		out["cpu_us_per_event"] = cpu / float64(updates.Load()) * 1e6
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
	out["gomaxprocs"] = runtime.GOMAXPROCS(0)
	out["protobuf"] = *useProtobuf
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
