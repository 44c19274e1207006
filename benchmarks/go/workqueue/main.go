// Command workqueue-bench is the client-go peer of kinformer's work-queue benchmark:
// client-go's util/workqueue (Typed, no metrics) under the same item pattern as
// benchmarks/contenders.py's workqueue scenarios, reporting one JSON line.
//
//	workqueue-bench -ops 1000000 -keys 1000 -workers 8 [-dups]
//
// The queue is seeded with `keys` distinct keys; each of `workers` goroutines loops
// get → (dups: add(key), add(other key)) → done → (no dups: add(key)) until `ops` items
// have been processed in all. Without -dups every add is of a key that is not queued;
// with -dups each item adds its own key while processing (queued again at done) and a
// second key that is usually queued already (collapsed).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/util/workqueue"
)

func main() {
	ops := flag.Int64("ops", 1_000_000, "items to process in all")
	keys := flag.Int("keys", 1000, "distinct keys")
	workers := flag.Int("workers", 8, "worker goroutines")
	dups := flag.Bool("dups", false, "add duplicates (see the package comment)")
	flag.Parse()

	names := make([]string, *keys)
	for i := range names {
		names[i] = fmt.Sprintf("default/pod-%d", i)
	}
	other := make(map[string]string, *keys)
	for i, name := range names {
		other[name] = names[(i+*keys/2)%*keys]
	}
	q := workqueue.NewTyped[string]()
	for _, name := range names {
		q.Add(name)
	}
	var processed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, shutdown := q.Get()
				if shutdown {
					return
				}
				n := processed.Add(1)
				if *dups {
					q.Add(key)
					q.Add(other[key])
					q.Done(key)
				} else {
					q.Done(key)
					q.Add(key)
				}
				if n == *ops {
					q.ShutDown()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	items := processed.Load()
	_ = json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"items": items, "seconds": elapsed, "items_per_s": float64(items) / elapsed,
		"ns_per_item": elapsed * 1e9 / float64(items),
	})
}
