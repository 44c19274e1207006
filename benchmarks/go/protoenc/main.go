// Command protoenc encodes the replay server's pods as the Kubernetes API server's protobuf
// wire format, so the client-go peer can be measured on protobuf as well as JSON.
//
// It reads JSON records on stdin, one per line:
//
//	{"list": {"resourceVersion": "2000", "pageSize": 500}}   first: how the list is paged
//	{"item": {...pod...}}                                      a list item
//	{"event": {"type": "MODIFIED", "object": {...pod...}}}     a watch event
//
// and writes records to stdout, each a tag byte, a 4-byte big-endian length and the bytes:
//
//	'A' the whole list (a v1 PodList, as the server answers a list without limit)
//	'P' one page of pageSize items (continue = offset of the next page, remainingItemCount)
//	'F' one watch frame exactly as the server streams it (length-delimited raw WatchEvent
//	    whose object is the pod in the "k8s\x00" + runtime.Unknown envelope)
//
// The encoders are apimachinery's own (the ones the API server uses), so the bytes are what
// a real server would send for the same objects.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/framer"
	"k8s.io/client-go/kubernetes/scheme"
)

type record struct {
	List *struct {
		ResourceVersion string `json:"resourceVersion"`
		PageSize        int    `json:"pageSize"`
	} `json:"list"`
	Item  *corev1.Pod `json:"item"`
	Event *struct {
		Type   string     `json:"type"`
		Object corev1.Pod `json:"object"`
	} `json:"event"`
}

func main() {
	objectEncoder := scheme.Codecs.EncoderForVersion(protobuf.NewSerializer(scheme.Scheme, scheme.Scheme),
		corev1.SchemeGroupVersion)
	raw := protobuf.NewRawSerializer(scheme.Scheme, scheme.Scheme)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	emit := func(tag byte, data []byte) {
		var head [5]byte
		head[0] = tag
		binary.BigEndian.PutUint32(head[1:], uint32(len(data)))
		_, _ = out.Write(head[:])
		_, _ = out.Write(data)
	}
	encode := func(obj runtime.Object) []byte {
		var buf bytes.Buffer
		if err := objectEncoder.Encode(obj, &buf); err != nil {
			panic(err)
		}
		return buf.Bytes()
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	rv, pageSize := "", 500
	var items []corev1.Pod
	itemsDone := false
	finishList := func() {
		if itemsDone {
			return
		}
		itemsDone = true
		emit('A', encode(&corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: items}))
		for start := 0; start < len(items); start += pageSize {
			end := min(start+pageSize, len(items))
			meta := metav1.ListMeta{ResourceVersion: rv}
			if end < len(items) {
				meta.Continue = strconv.Itoa(end)
				remaining := int64(len(items) - end)
				meta.RemainingItemCount = &remaining
			}
			emit('P', encode(&corev1.PodList{ListMeta: meta, Items: items[start:end]}))
		}
	}
	var frame bytes.Buffer
	frames := framer.NewLengthDelimitedFrameWriter(&frame)
	for in.Scan() {
		var r record
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			panic(fmt.Sprintf("bad record: %v", err))
		}
		switch {
		case r.List != nil:
			rv, pageSize = r.List.ResourceVersion, r.List.PageSize
		case r.Item != nil:
			items = append(items, *r.Item)
		case r.Event != nil:
			finishList()
			event := &metav1.WatchEvent{Type: r.Event.Type,
				Object: runtime.RawExtension{Raw: encode(&r.Event.Object)}}
			var body bytes.Buffer
			if err := raw.Encode(event, &body); err != nil {
				panic(err)
			}
			frame.Reset()
			if _, err := frames.Write(body.Bytes()); err != nil {
				panic(err)
			}
			emit('F', frame.Bytes())
		}
	}
	if err := in.Err(); err != nil {
		panic(err)
	}
	finishList()
}
